"""Liveness and readiness."""

from __future__ import annotations

from flask import Blueprint, jsonify
from redis.exceptions import RedisError

from .. import upstream_health
from ..redis_sentinel import replication
from .context import get_store
from .errors import error

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Answer 200 while the process is up."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Answer 200 when Redis answers and the queue is writable, 503 otherwise."""
    store = get_store()
    try:
        store.redis.ping()
        probe = store.keys.readiness_probe
        store.redis.set(probe, "1", ex=10)
        depth = store.queue.count
        replicas = replication(store.redis)
        upstream = upstream_health.read(store.redis, store.keys)
    except RedisError as exc:
        return error(503, "not_ready", f"redis: {type(exc).__name__}")
    # Reported, not required: with too few replicas each delivery answers 503 not_replicated
    # itself, and taking every web process out of rotation would not help.
    replicas["required"] = store.settings.min_replicas
    # The gateway as the workers last met it: reported, never a reason to leave rotation (deliveries
    # are still acknowledged and kept while the gateway is down; the workers catch up).
    return jsonify(status="ready", queue_depth=depth, replicas=replicas, upstream=upstream)
