"""The signing secrets of managed webhook endpoints, kept in Redis for every web process.

The gateway shows an endpoint's ``signing_secret`` once, when the endpoint is
created or its secret rotated, and signs every delivery with the current one.
``python -m aistats_hooks endpoints create`` and ``rotate-secret`` store it
here, so every receiver (any host, no restart) verifies with it. A rotated-out
secret keeps verifying for a grace period, because deliveries signed with it
may still be in flight or retried; then it is dropped.

Secrets from ``AISTATS_WEBHOOK_SECRET`` (the environment) always verify as
well. ``SecretRing`` is the receiver's view: it caches the stored secrets and
checks the cache on every delivery with one GET of a version counter, which
every change here increments, so a rotation or retirement takes effect on the
next delivery in every web process (a ``--grace 0`` rotation refuses the old
secret at once); it also reloads at most once a second on a signature that
matched none.

Key (one hash per deployment): ``{prefix}:endpoint_secrets``, field = the
secret's SHA-256 fingerprint, value = JSON ``{secret, endpoint_id,
added_at, retire_at}`` (unix seconds; ``retire_at`` null while current).
``{prefix}:endpoint_secrets:version``: a counter incremented after each change.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Sequence

from redis import Redis

# Long enough for the gateway's retries of a delivery signed just before the
# switch (1, 5 and 15 minutes after the first attempt) and for slow queues.
DEFAULT_GRACE_SECONDS = 3600
MIN_SECRET_LENGTH = 16
RELOAD_INTERVAL = 1.0


def _key(prefix: str) -> str:
    return f"{prefix}:endpoint_secrets"


def _version_key(prefix: str) -> str:
    return f"{prefix}:endpoint_secrets:version"


def _changed(redis: Redis, prefix: str) -> None:
    # After the write: a process that reads the new version then reads the new secrets.
    redis.incr(_version_key(prefix))


def fingerprint(secret: str) -> str:
    """Return a non-secret name for ``secret`` (for lists and logs)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def add(redis: Redis, prefix: str, secret: str, endpoint_id: str, *, now: float | None = None) -> str:
    """Store ``secret`` as the current secret of ``endpoint_id``; return its fingerprint."""
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
        raise ValueError("the gateway returned no usable signing_secret")
    entry = {"secret": secret, "endpoint_id": endpoint_id, "added_at": int(now or time.time()), "retire_at": None}
    name = fingerprint(secret)
    redis.hset(_key(prefix), name, json.dumps(entry))
    _changed(redis, prefix)
    return name


def retire(redis: Redis, prefix: str, endpoint_id: str, *, keep: str, grace: int = DEFAULT_GRACE_SECONDS,
           now: float | None = None) -> list[str]:
    """Give every stored secret of ``endpoint_id`` but ``keep`` a retirement time; return their fingerprints."""
    now = now or time.time()
    retired = []
    for name, entry in entries(redis, prefix).items():
        if entry.get("endpoint_id") == endpoint_id and name != keep and entry.get("retire_at") is None:
            entry["retire_at"] = int(now + grace)
            redis.hset(_key(prefix), name, json.dumps(entry))
            retired.append(name)
    if retired:
        _changed(redis, prefix)
    return retired


def entries(redis: Redis, prefix: str) -> dict[str, dict]:
    """Return every stored entry by fingerprint, unreadable ones skipped."""
    out = {}
    for name, raw in redis.hgetall(_key(prefix)).items():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("secret"), str):
            out[name.decode() if isinstance(name, bytes) else name] = entry
    return out


def active(redis: Redis, prefix: str, *, now: float | None = None) -> list[str]:
    """Return the secrets that verify now; drop the ones past their retirement."""
    now = now or time.time()
    secrets, expired = [], []
    for name, entry in entries(redis, prefix).items():
        if entry.get("retire_at") is not None and entry["retire_at"] <= now:
            expired.append(name)
        else:
            secrets.append(entry["secret"])
    if expired:
        redis.hdel(_key(prefix), *expired)
    return secrets


def newest(redis: Redis, prefix: str) -> str | None:
    """Return the most recently stored secret that is not retiring (what the gateway signs with now)."""
    current = [e for e in entries(redis, prefix).values() if e.get("retire_at") is None]
    return max(current, key=lambda e: e.get("added_at") or 0)["secret"] if current else None


def current(redis: Redis, prefix: str, endpoint_id: str) -> str | None:
    """Return the newest stored, not retiring secret of ``endpoint_id`` (what the gateway signs it with now)."""
    mine = [e for e in entries(redis, prefix).values()
            if e.get("endpoint_id") == endpoint_id and e.get("retire_at") is None]
    return max(mine, key=lambda e: e.get("added_at") or 0)["secret"] if mine else None


def describe(redis: Redis, prefix: str) -> list[dict]:
    """Return the stored secrets without the secrets: fingerprint, endpoint, times."""
    return [{"fingerprint": name, "endpoint_id": e.get("endpoint_id"), "added_at": e.get("added_at"),
             "retire_at": e.get("retire_at")} for name, e in sorted(entries(redis, prefix).items())]


class SecretRing:
    """The secrets one web process verifies with: the environment's, and the stored ones.

    Stored secrets are cached with their retirement times (a retired one stops
    verifying on time without a reload) and re-read when the stored version
    counter moved (read on every call: one GET), on a signature that matched
    none (at most once per ``RELOAD_INTERVAL``), or when the cache is older
    than ``max_age`` seconds (a backstop for a write made without the counter).
    """

    def __init__(self, redis: Redis, prefix: str, configured: Sequence[str], *, max_age: float = 30.0) -> None:
        self._redis, self._prefix, self._max_age = redis, prefix, max_age
        self._configured = tuple(configured)
        self._stored: tuple[tuple[str, float | None], ...] | None = None
        self._loaded_at = 0.0
        self._version: bytes | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<SecretRing configured={len(self._configured)} stored={len(self._stored or ())}>"

    def secrets(self) -> tuple[str, ...]:
        """Return every secret that verifies now (may raise RedisError when the stored ones must be read)."""
        version = self._redis.get(_version_key(self._prefix))
        if self._stored is None or version != self._version or time.monotonic() - self._loaded_at > self._max_age:
            self.reload(force=True)
        now = time.time()
        return self._configured + tuple(s for s, retire_at in self._stored or () if retire_at is None or retire_at > now)

    def reload(self, *, force: bool = False) -> bool:
        """Re-read the stored secrets, at most once per ``RELOAD_INTERVAL``; tell whether they changed."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._loaded_at < RELOAD_INTERVAL:
                return False
            version = self._redis.get(_version_key(self._prefix))  # before the read: a later change reloads again
            fresh = tuple(sorted((e["secret"], e.get("retire_at")) for e in entries(self._redis, self._prefix).values()
                                 if e["secret"] not in self._configured))
            self._loaded_at, self._version = now, version
            changed = fresh != self._stored
            self._stored = fresh
            return changed
