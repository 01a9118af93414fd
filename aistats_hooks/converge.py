"""After a failover: reconcile again every batch whose deliveries are newer than its record.

A failover can lose the writes the old primary had not passed on: with
``AISTATS_MIN_REPLICAS`` no acknowledged delivery is among them, but a
reconcile's commit or its RQ job may be (and when two Sentinels promote
different replicas, the demoted one's writes are gone too). What survives is
the delivery itself, still marked ``queued`` or ``coalesced``: the commit
that would have settled it is what was lost.

``check`` runs with every discovery tick (each second, from the cron): one
``INFO server`` call. When the Redis it talks to has another ``run_id`` than
the one last recorded (a failover, or a restart), it scans every batch's
delivery outcomes and queues a reconcile of each batch holding an unsettled
delivery; ``request_reconcile`` coalesces with a job that survived.
"""

from __future__ import annotations

import logging

from redis import Redis

from .keys import Keys
from .store.script import text

log = logging.getLogger("aistats_hooks.converge")
UNSETTLED = ("queued", "coalesced")


def primary_key(keys: Keys) -> str:
    return f"{keys.prefix}:primary"


def changed_primary(redis: Redis, keys: Keys) -> bool:
    """Tell whether the server answering now is not the one recorded last (and record it)."""
    run_id = redis.info("server").get("run_id")
    previous = redis.getset(primary_key(keys), run_id)
    return previous is not None and text(previous) != run_id


def unsettled_batches(redis: Redis, keys: Keys) -> list[str]:
    """Batches holding a delivery whose reconcile has not committed (``queued`` or ``coalesced``)."""
    found = []
    prefix = keys.outcomes("")
    for key in redis.scan_iter(match=keys.outcomes("*"), count=1000):
        name = text(key)
        values = redis.hvals(name)
        if any(text(v).split(":", 1)[0] in UNSETTLED for v in values):
            found.append(name[len(prefix):])
    return found


def check(store) -> int:
    """Queue a reconcile of every unsettled batch when the primary changed; return how many were queued."""
    if not changed_primary(store.redis, store.keys):
        return 0
    batches = unsettled_batches(store.redis, store.keys)
    queued = sum(store.request_reconcile(b, debounce=False) == "queued" for b in batches)
    log.warning("the Redis primary changed: %d batches with unsettled deliveries, %d reconciles queued",
                len(batches), queued)
    store.incr("converge", "runs", 1)
    store.incr("converge", "queued", queued)
    return queued
