"""Settings read once from the environment into a frozen object.

Nothing reads ``os.environ`` after start-up: each process builds one
``Settings`` with ``Settings.from_env()`` and passes it down explicitly.
A missing or malformed value raises ``ConfigError`` naming the variable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import NoReturn
from urllib.parse import urlsplit

from .errors import ConfigError
from .alert_settings import alert_settings
from .archive_settings import archive_settings
from .forward_settings import DEFAULT_EVENTS, forward_settings
from .job_queues import ROLES, roles_from_env
from .urls import masked

# The gateway's public API root: the SDK's default and AISTATS_BASE_URL's.
DEFAULT_BASE_URL = "https://api.phaseo.app/v1"
MAX_BODY_BYTES = 1024 * 1024
# Every entry point (CLI, launcher, gunicorn's app, RQ's settings module) exits
# with this status after a bad setting, so a supervisor can tell it from a crash
# and stop restarting (launcher/keep.py does).
EXIT_CONFIG = 2
# A webhook secret is an HMAC key: a short one can be guessed from signed deliveries.
MIN_WEBHOOK_SECRET_LENGTH = 16
MIN_TOKEN_LENGTH = 16  # QUERY_API_TOKEN and AISTATS_SESSION_SECRET


def config_error_message(exc: ConfigError) -> str:
    """Return the one line (without the program prefix) that reports a bad setting."""
    return f"configuration error: {exc}"


def exit_config_error(exc: ConfigError) -> NoReturn:
    """Print the bad-setting line on stderr and exit with ``EXIT_CONFIG``, no traceback."""
    print(f"aistats-hooks: {config_error_message(exc)}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_CONFIG) from None


def int_setting(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    """Return the whole-number setting ``name`` (``default`` when unset), or raise ``ConfigError`` naming it."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    # Digits only: int() would also take "+5", "1_000" or non-ASCII digits.
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise ConfigError(name, f"expected a whole number from {low} to {high}, got {raw!r}")
    return int(raw)


def _bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(name, f"expected 1 or 0, got {raw!r}")


def _modules(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Read a comma-separated list of importable module names (``a.b, c``)."""
    modules = tuple(m.strip() for m in env.get(name, "").split(",") if m.strip())
    for module in modules:
        if not all(part.isidentifier() for part in module.split(".")):
            raise ConfigError(name, f"expected comma-separated module names such as examples.handlers, got {module!r}")
    return modules


def _url(env: Mapping[str, str], name: str, default: str | None, schemes: tuple[str, ...]) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        # Never the password: this line goes to stderr and logs.
        raise ConfigError(name, f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}, "
                                f"got {masked(raw)!r}")
    return raw.rstrip("/")


def _sentinel_settings(env: Mapping[str, str]) -> dict:
    """Read REDIS_SENTINELS (host:port,...), REDIS_SENTINEL_MASTER and REDIS_SENTINEL_PASSWORD."""
    raw = env.get("REDIS_SENTINELS", "").strip()
    master = env.get("REDIS_SENTINEL_MASTER", "").strip() or None
    if not raw:
        return {}
    sentinels = []
    for item in raw.split(","):
        host, _, port = item.strip().rpartition(":")
        host = host.strip("[]")
        if not host or not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
            raise ConfigError("REDIS_SENTINELS", f"expected host:port,host:port,..., got {item.strip()!r}")
        sentinels.append((host, int(port)))
    if not master:
        raise ConfigError("REDIS_SENTINEL_MASTER", "required with REDIS_SENTINELS (the service name Sentinel monitors)")
    return {"redis_sentinels": tuple(sentinels), "redis_sentinel_master": master,
            "redis_sentinel_password": env.get("REDIS_SENTINEL_PASSWORD", "") or None}


# Keys the gateway stops accepting on 2027-01-01 (pipeline/before/auth.ts), and what endpoint management needs.
LEGACY_KEY_PREFIX = "aistats_v1_sk_"
MANAGEMENT_KEY_HINT = ("required to manage webhook endpoints: set it to a phaseo_v1_mk_... management key "
                       "with settings:read and settings:write")


@dataclass(frozen=True)
class Settings:
    """Everything a process of aistats-hooks needs to know, read once."""

    redis_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    # A phaseo_v1_mk_... management key (settings:read/settings:write): only /v1/webhook-endpoints takes it.
    management_key: str | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    webhook_tolerance: int = 300
    allow_unsigned: bool = False
    public_base_url: str | None = None
    query_api_token: str | None = field(default=None, repr=False)
    session_secret: str | None = field(default=None, repr=False)
    key_prefix: str = "aistats"
    queue_name: str = "aistats"
    # The queues a worker serves (job_queues.py): every role by default, reconciles first.
    worker_queues: tuple[str, ...] = ROLES
    max_body_bytes: int = MAX_BODY_BYTES
    event_retention: int = 30 * 86400
    # The sweep is a backstop now (discovery finds what changed): an open batch is re-reconciled after
    # stale_after seconds, at most sweep_max_per_hour of them an hour (0 = no cap).
    stale_after: int = 3600
    sweep_max_per_hour: int = 120
    discovery_interval: int = 60
    upstream_timeout: int = 20
    # Reconciles one worker runs at once (due batches taken ahead of their jobs: workers/drain.py) and the gateway's
    # shared call budget across every process (upstream_budget.py; 0 = no cap).
    reconcile_concurrency: int = 32
    upstream_rps: int = 0
    data_dir: str = ".data"
    port: int = 8000  # the web process's (gunicorn binds ${PORT:-8000}); checked here so a typo is one line
    metrics_public: bool = False
    debounce_ms: int = 1000
    compact_events: bool = True
    sweep_interval: int = 30
    webhook_endpoint_id: str | None = None
    max_batch_events: int = 100
    max_batch_bytes: int = 256 * 1024
    unknown_retention: int = 7 * 86400
    # Transitions out (handlers.py, changes.py): handler modules, their retries and timeout, the feed's cap.
    handler_modules: tuple[str, ...] = ()
    handler_retries: int = 5
    handler_timeout: int = 600
    changes_maxlen: int = 1_000_000
    # Sentinel (redis_sentinel.py): the sentinels' (host, port) and the service name.
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str | None = None
    redis_sentinel_password: str | None = field(default=None, repr=False)
    # Acknowledge a delivery only once this many replicas have it (WAIT), within the timeout.
    min_replicas: int = 0
    replica_timeout_ms: int = 500
    # Forwarding (forwarding.py): destinations, the whsec_ signing secret, the transitions sent.
    forward_urls: tuple[str, ...] = ()
    forward_secret: str | None = field(default=None, repr=False)
    forward_events: tuple[str, ...] = DEFAULT_EVENTS
    # The archive of ended batches' files (archive.py): an fsspec URL, and an S3-compatible endpoint.
    archive_url: str | None = None
    archive_endpoint_url: str | None = None
    # Alerts (alerts.py): where they go, their signing secret, and the money thresholds in nanos.
    alert_urls: tuple[str, ...] = ()
    alert_secret: str | None = field(default=None, repr=False)
    alert_batch_nanos: int | None = None
    alert_daily_nanos: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default ``os.environ``), validating every value."""
        env = os.environ if env is None else env
        secrets = tuple(s.strip() for s in env.get("AISTATS_WEBHOOK_SECRET", "").split(",") if s.strip())
        for n, secret in enumerate(secrets, 1):
            if len(secret) < MIN_WEBHOOK_SECRET_LENGTH:
                raise ConfigError("AISTATS_WEBHOOK_SECRET", f"secret {n} of {len(secrets)} is {len(secret)} characters "
                                  f"long; at least {MIN_WEBHOOK_SECRET_LENGTH} are required")
        for name in ("QUERY_API_TOKEN", "AISTATS_SESSION_SECRET"):  # guessable when short
            value = env.get(name, "").strip()
            if value and len(value) < MIN_TOKEN_LENGTH:
                raise ConfigError(name, f"{len(value)} characters; at least {MIN_TOKEN_LENGTH} are required")
        prefix = env.get("AISTATS_KEY_PREFIX", "aistats").strip() or "aistats"
        if not prefix.replace("-", "").replace("_", "").replace(":", "").isalnum():
            raise ConfigError("AISTATS_KEY_PREFIX", f"expected letters, digits, '-', '_' or ':', got {prefix!r}")
        return cls(
            redis_url=_url(env, "REDIS_URL", None, ("redis", "rediss", "unix")),
            api_key=env.get("AISTATS_API_KEY", "").strip() or None,
            management_key=env.get("AISTATS_MANAGEMENT_KEY", "").strip() or None,
            base_url=_url(env, "AISTATS_BASE_URL", DEFAULT_BASE_URL, ("https", "http")),
            webhook_secrets=secrets,
            webhook_tolerance=int_setting(env, "AISTATS_WEBHOOK_TOLERANCE", 300, low=1, high=86400),
            allow_unsigned=_bool(env, "AISTATS_ALLOW_UNSIGNED"),
            public_base_url=_url(env, "PUBLIC_BASE_URL", None, ("https", "http")),
            query_api_token=env.get("QUERY_API_TOKEN", "").strip() or None,
            # Signs the dashboard's session cookie; unset turns the dashboard off.
            session_secret=env.get("AISTATS_SESSION_SECRET", "").strip() or None,
            key_prefix=prefix,
            queue_name=env.get("AISTATS_QUEUE", "").strip() or prefix,
            **roles_from_env(env),
            max_body_bytes=int_setting(
                env, "AISTATS_MAX_BODY_BYTES", MAX_BODY_BYTES, low=1024, high=64 * MAX_BODY_BYTES
            ),
            # Dedupe lives on the event record, so retention must outlast the
            # gateway's 21-minute retry span: an hour is the floor.
            event_retention=int_setting(env, "AISTATS_EVENT_RETENTION", 30 * 86400, low=3600, high=366 * 86400),
            stale_after=int_setting(env, "AISTATS_STALE_AFTER", 3600, low=5, high=7 * 86400),
            sweep_max_per_hour=int_setting(env, "AISTATS_SWEEP_MAX_PER_HOUR", 120, low=0, high=10**7),
            # The longest wait between two polls of the gateway's list (discovery.py).
            discovery_interval=int_setting(env, "AISTATS_DISCOVERY_INTERVAL", 60, low=5, high=3600),
            upstream_timeout=int_setting(env, "AISTATS_UPSTREAM_TIMEOUT", 20, low=1, high=600),
            reconcile_concurrency=int_setting(env, "AISTATS_RECONCILE_CONCURRENCY", 32, low=1, high=128),
            upstream_rps=int_setting(env, "AISTATS_UPSTREAM_RPS", 0, low=0, high=100_000),
            data_dir=env.get("AISTATS_DATA_DIR", "").strip() or ".data",
            port=int_setting(env, "PORT", 8000, low=1, high=65535),
            metrics_public=_bool(env, "METRICS_PUBLIC"),
            # A follow-up reconcile within this window after a retrieve waits for its end.
            debounce_ms=int_setting(env, "AISTATS_DEBOUNCE_MS", 1000, low=0, high=60000),
            # Once a batch is final, drop the bodies of its superseded snapshots (created, progress).
            compact_events=_bool(env, "AISTATS_COMPACT_EVENTS", default=True),
            sweep_interval=int_setting(env, "AISTATS_SWEEP_INTERVAL", 30, low=5, high=3600),
            # The managed webhook endpoint (a UUID) that `create-batch` names by default.
            webhook_endpoint_id=env.get("AISTATS_WEBHOOK_ENDPOINT_ID", "").strip() or None,
            # What one batch may store (a real batch has ~15 events of ~2 KB); beyond: 202 ignored.
            max_batch_events=int_setting(env, "AISTATS_MAX_BATCH_EVENTS", 100, low=20, high=100_000),
            max_batch_bytes=int_setting(env, "AISTATS_MAX_BATCH_BYTES", 256 * 1024, low=64 * 1024,
                                        high=1024 * 1024 * 1024),
            # Records of batches the gateway does not know (not_found) are pruned after this.
            unknown_retention=int_setting(env, "AISTATS_UNKNOWN_RETENTION", 7 * 86400, low=3600, high=366 * 86400),
            handler_modules=_modules(env, "AISTATS_HANDLERS"),
            handler_retries=int_setting(env, "AISTATS_HANDLER_RETRIES", 5, low=0, high=25),
            handler_timeout=int_setting(env, "AISTATS_HANDLER_TIMEOUT", 600, low=1, high=86400),
            changes_maxlen=int_setting(env, "AISTATS_CHANGES_MAXLEN", 1_000_000, low=1000, high=10**9),
            **_sentinel_settings(env),
            min_replicas=int_setting(env, "AISTATS_MIN_REPLICAS", 0, low=0, high=16),
            # Never 0: WAIT's 0 means "block forever".
            replica_timeout_ms=int_setting(env, "AISTATS_REPLICA_TIMEOUT_MS", 500, low=1, high=60000),
            **forward_settings(env),
            **archive_settings(env),
            **alert_settings(env),
        )

    def replace(self, **changes) -> Settings:
        """Return a copy with ``changes`` applied (tests and the CLI use it)."""
        return replace(self, **changes)

    def require_webhook_secret(self) -> None:
        """Fail closed: refuse to receive webhooks with no secret unless explicitly allowed."""
        if not self.webhook_secrets and not self.allow_unsigned:
            raise ConfigError(
                "AISTATS_WEBHOOK_SECRET",
                "required (comma-separated whsec_... secrets), or store an endpoint's secret with "
                "`python -m aistats_hooks endpoints create`; set AISTATS_ALLOW_UNSIGNED=1 to accept unsigned deliveries",
            )

    def require_management_key(self) -> str:
        """Return the management key, or raise naming the variable."""
        if not self.management_key:
            raise ConfigError("AISTATS_MANAGEMENT_KEY", MANAGEMENT_KEY_HINT)
        return self.management_key

    def legacy_key_warning(self) -> str | None:
        """The one line to print at start when the API key has the prefix the gateway retires on 2027-01-01."""
        if self.api_key and self.api_key.startswith(LEGACY_KEY_PREFIX):
            return (f"AISTATS_API_KEY starts with {LEGACY_KEY_PREFIX}: the gateway refuses such keys from 2027-01-01 "
                    "(401 legacy_key_prefix_retired); create a phaseo_v1_sk_... key")
        return None

    def require_api_key(self) -> str:
        """Return the API key, or raise naming the variable."""
        if not self.api_key:
            raise ConfigError("AISTATS_API_KEY", "required to call the AI Stats gateway")
        return self.api_key
