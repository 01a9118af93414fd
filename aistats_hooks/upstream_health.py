"""The gateway's state as the workers last met it: last success, last error and its reason.

Written where the workers call the gateway (a reconcile's retrieve, discovery's list) into
one small hash, ``{p}:upstream:health``; read by ``/readyz`` (its own field: readiness
stays about what this service needs), ``/metrics`` and the dashboard. A success is
written at most once a second per process: the state is for people, not a log.
"""

from __future__ import annotations

import time

from redis import Redis
from redis.exceptions import RedisError

from .errors import AIStatsError, AuthenticationError, NotFoundError, RateLimitError
from .keys import Keys

OK_EVERY_S = 1.0
REASONS = ("unreachable", "key_refused", "rate_limited", "upstream_error", "refused")
_last_ok: dict[str, float] = {}


def key(keys: Keys) -> str:
    return keys.upstream_health


def reason_of(exc: BaseException) -> str | None:
    """What a gateway error says about the gateway: None for an answer about one batch (404, 400...)."""
    if isinstance(exc, AuthenticationError):
        return "key_refused"
    if isinstance(exc, RateLimitError):
        return "rate_limited"
    if isinstance(exc, NotFoundError) or not isinstance(exc, AIStatsError):
        return None
    status = getattr(exc, "status", None)
    if status is None:
        return "unreachable"  # a timeout or a connection error: no answer at all
    if status >= 500:
        return "upstream_error"
    return None


def ok(redis: Redis, keys: Keys, *, now: float | None = None) -> None:
    """Note a successful gateway call (at most once a second per process); a Redis error is ignored."""
    now = time.time() if now is None else now
    if now - _last_ok.get(keys.prefix, 0.0) < OK_EVERY_S:
        return
    _last_ok[keys.prefix] = now
    try:
        redis.hset(key(keys), "last_success", f"{now:.3f}")
    except RedisError:
        pass


def failed(redis: Redis, keys: Keys, exc: BaseException, *, now: float | None = None) -> None:
    """Note a gateway error that says something about the gateway (``reason_of``)."""
    reason = reason_of(exc)
    if reason is None:
        return
    now = time.time() if now is None else now
    detail = f"{type(exc).__name__}: {exc}"[:200]
    try:
        redis.hset(key(keys), mapping={"last_error": f"{now:.3f}", "reason": reason, "detail": detail})
    except RedisError:
        pass


def read(redis: Redis, keys: Keys) -> dict:
    """``{state, last_success, last_error, reason, detail}``; state is ok, failing or unknown."""
    raw = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
           for k, v in redis.hgetall(key(keys)).items()}

    def stamp(name: str) -> float | None:
        try:
            return float(raw[name])
        except (KeyError, ValueError):
            return None

    success, error = stamp("last_success"), stamp("last_error")
    if success is None and error is None:
        state = "unknown"
    elif error is not None and (success is None or error > success):
        state = "failing"
    else:
        state = "ok"
    return {"state": state, "last_success": success, "last_error": error,
            "reason": raw.get("reason") if error is not None else None,
            "detail": raw.get("detail") if error is not None else None}
