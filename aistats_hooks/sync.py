"""Bring one batch's record in line with the gateway: the body of a reconcile job.

The retrieved batch object is the truth; a webhook payload is only a hint,
used as a marked fallback when the gateway cannot be reached. RQ-specific
concerns (retries, Retry-After) stay in ``workers.jobs``.
"""

from __future__ import annotations

import logging
import time
from enum import Enum

from .errors import AIStatsError, NotFoundError
from .reconcile import BatchStatus, Source, is_final, iso, merge
from .sdk import AIStats
from .store import Store

log = logging.getLogger("aistats_hooks.sync")


class Outcome(str, Enum):
    """What a reconcile run did."""

    RECONCILED = "reconciled"
    UNCHANGED = "unchanged"
    SKIPPED_FINAL = "skipped_final"
    NOT_FOUND = "not_found"
    DEFERRED = "deferred"
    FALLBACK = "fallback"


def sync_batch(store: Store, client: AIStats, batch_id: str, *, force: bool = False) -> Outcome:
    """Retrieve ``batch_id`` and fold it into its record; raise upstream errors to the caller."""
    started_ms = int(time.time() * 1000)
    lock = store.lock(batch_id)
    if not lock.acquire():
        # Another worker holds the batch; make sure one run follows it.
        store.request_reconcile(batch_id)
        return Outcome.DEFERRED
    try:
        previous = store.get(batch_id)
        if is_final(previous) and not force:
            store.mark_events(batch_id, Outcome.SKIPPED_FINAL.value, until_ms=started_ms)
            return Outcome.SKIPPED_FINAL
        store.incr("upstream", "retrieve")
        try:
            batch = client.retrieve_batch(batch_id)
        except NotFoundError:
            store.incr("upstream", "404")
            _save_not_found(store, batch_id, previous)
            store.mark_events(batch_id, Outcome.NOT_FOUND.value, until_ms=started_ms)
            return Outcome.NOT_FOUND
        except AIStatsError as exc:
            store.incr("upstream", str(exc.status or type(exc).__name__))
            raise
        store.incr("upstream", "200")
        record = merge(previous, batch, source=Source.RETRIEVE)
        _stamp(store, record, batch_id)
        pipe = store.redis.pipeline(transaction=True)
        store.save(record, previous, pipeline=pipe)
        pipe.execute()
        store.mark_events(batch_id, Outcome.RECONCILED.value, until_ms=started_ms)
        return Outcome.RECONCILED
    finally:
        _release(lock)


def apply_fallback(store: Store, batch_id: str) -> Outcome:
    """Fold the newest stored webhook payload into the record, marked as such."""
    lock = store.lock(batch_id)
    if not lock.acquire():
        return Outcome.DEFERRED
    try:
        previous = store.get(batch_id)
        _, data = store.latest_payload(batch_id)
        if data is None:
            return Outcome.UNCHANGED
        record = merge(previous, data, source=Source.WEBHOOK_PAYLOAD)
        _stamp(store, record, batch_id)
        store.save(record, previous)
        log.warning("applied webhook payload as fallback", extra={"batch_id": batch_id})
        return Outcome.FALLBACK
    finally:
        _release(lock)


def _stamp(store: Store, record: dict, batch_id: str) -> None:
    event, _ = store.latest_payload(batch_id)
    if event:
        record["last_event"] = {"id": event["id"], "type": event.get("type"), "received_at": iso(event.get("received_at", 0) / 1000)}
    record["reconcile_count"] = int(record.get("reconcile_count") or 0) + 1
    record["reconciled_at"] = iso(time.time())


def _save_not_found(store: Store, batch_id: str, previous: dict | None) -> None:
    record = dict(previous or {"id": batch_id, "request_counts": {}, "billing": None})
    if not BatchStatus(record.get("status", "pending")).terminal:
        record["status"] = BatchStatus.NOT_FOUND.value
    record["not_found"] = True
    _stamp(store, record, batch_id)
    store.save(record, previous)


def _release(lock) -> None:
    from redis.exceptions import LockError

    try:
        lock.release()
    except LockError:
        # The lock timed out under us; the record write was atomic, nothing to undo.
        log.warning("reconcile lock expired before release")
