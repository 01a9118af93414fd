"""The Flask application: webhook receiver, query API and health endpoints.

One ``init_app(app)`` per concern, as in Flask's tutorial: ``context`` keeps
the store and settings (``get_store()``, ``get_settings()``), ``auth`` has
the ``require_token`` decorator, ``errors`` answers every failure as JSON.
"""

from __future__ import annotations

import logging

from flask import Flask
from redis import Redis
from redis.exceptions import RedisError

from .. import endpoint_secrets, logs, tracing
from ..config import Settings
from ..redis_conn import connect, warn_if_lossy
from ..store import Store
from .context import get_settings, get_store

__all__ = ["create_app", "get_settings", "get_store"]

log = logging.getLogger("aistats_hooks.web")


def create_app(settings: Settings | None = None, *, redis: Redis | None = None) -> Flask:
    """Create the app for ``settings`` (read from the environment when None)."""
    settings = settings or Settings.from_env()
    redis = redis if redis is not None else connect(settings)
    _require_secret(settings, redis)
    # JSON lines on the root logger, unless the host (a test runner) already logs.
    logs.configure(logs.level_from_env(), secrets=logs.secrets_of(settings), force=False)
    warn_if_lossy(redis)  # an evicting or non-persistent Redis: one WARNING line, once
    if not settings.webhook_secrets and settings.allow_unsigned:
        log.warning(
            "AISTATS_ALLOW_UNSIGNED=1 and no AISTATS_WEBHOOK_SECRET: accepting UNSIGNED webhooks. "
            "Anyone who can reach this endpoint can inject events. Do not run this in production."
        )
    tracing.configure("aistats-hooks-web", redis_spans=False)  # off unless OTEL_TRACES_EXPORTER names one
    app = Flask(__name__)
    tracing.instrument_app(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False

    from . import changes, context, errors, forwarding, health, jobs, metrics, openapi, query, receiver, request_log

    context.init_app(app, settings, Store(redis, settings))
    errors.init_app(app)
    request_log.init_app(app)
    app.register_blueprint(receiver.bp)
    app.register_blueprint(query.bp)
    app.register_blueprint(changes.bp)  # GET /changes, the change feed
    app.register_blueprint(forwarding.bp)  # GET /forwarding/messages
    app.register_blueprint(health.bp)
    app.register_blueprint(jobs.bp)  # GET /jobs/failed, POST /jobs/failed/requeue
    metrics.init_app(app)
    app.register_blueprint(openapi.bp)  # GET /openapi.json, public
    from . import dashboard  # / and /dashboard: pages behind a login (off without a session secret)

    dashboard.init_app(app, settings)
    return app


def _require_secret(settings: Settings, redis: Redis) -> None:
    """Fail closed at start: no configured secret and none stored by `endpoints create`.

    When Redis cannot be asked, start anyway: every delivery is then refused
    with 503 until the stored secrets can be read (the gateway retries).
    """
    if settings.webhook_secrets or settings.allow_unsigned:
        return
    try:
        stored = endpoint_secrets.active(redis, settings.key_prefix)
    except RedisError:
        return
    if not stored:
        settings.require_webhook_secret()
