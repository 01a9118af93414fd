"""Bring one batch's record in line with the gateway: the body of a reconcile job.

Two Redis round trips around one upstream call: ``Store.begin`` frees the
job's pending slot, takes the batch's lock and reads the record and newest
event; ``Store.commit`` writes everything and releases the lock, atomically.
The retrieved batch object is the truth; a webhook payload is only a hint,
used as a marked fallback when the gateway cannot be reached. RQ-specific
concerns (retries, Retry-After) stay in ``workers.jobs``.
"""

from __future__ import annotations

import logging
import time
import uuid
from enum import Enum

from .delivery import TERMINAL_EVENT_TYPES
from .errors import AIStatsError, BatchLocked, NotFoundError
from .merge import is_final, merge
from .sdk import AIStats
from .status import BatchStatus, Source
from .store import Begun, Store
from .timestamps import iso

log = logging.getLogger("aistats_hooks.reconcile")
# Seconds a run waits for another worker's run of the same batch before
# handing over to a follow-up job (which the lock holder's events also queue).
LOCK_WAIT = 2.0
TRACK_WAIT = 10.0  # seconds create-batch waits for a reconcile of the new batch to end


class Outcome(str, Enum):
    """What a reconcile run did."""

    RECONCILED = "reconciled"
    UNCHANGED = "unchanged"
    SKIPPED_FINAL = "skipped_final"
    NOT_FOUND = "not_found"
    DEFERRED = "deferred"
    FALLBACK = "fallback"


def reconcile_batch(store: Store, client: AIStats, batch_id: str, *, job_id: str = "", force: bool = False) -> Outcome:
    """Retrieve ``batch_id`` and fold it into its record; raise upstream errors to the caller."""
    token = uuid.uuid4().hex
    started_ms = int(time.time() * 1000)
    begun = store.begin(batch_id, job_id, token, wait=LOCK_WAIT)
    if begun is None:
        # Another worker holds the batch; make sure one run follows it.
        store.request_reconcile(batch_id)
        return Outcome.DEFERRED
    if is_final(begun.record) and not force:
        store.commit(batch_id, None, token=token, settle=(Outcome.SKIPPED_FINAL.value, started_ms))
        return Outcome.SKIPPED_FINAL
    try:
        batch = client.retrieve_batch(batch_id)
    except NotFoundError:
        record = _not_found(begun.record, batch_id)
        _stamp(record, begun)
        store.commit(batch_id, record, token=token, settle=(Outcome.NOT_FOUND.value, started_ms), upstream="404")
        return Outcome.NOT_FOUND
    except AIStatsError as exc:
        # No record to write: count the call and release the lock, in one step.
        store.commit(batch_id, None, token=token, upstream=str(exc.status or type(exc).__name__))
        raise
    except BaseException:
        store.unlock(batch_id, token)
        raise
    record = merge(begun.record, batch, source=Source.RETRIEVE)
    _stamp(record, begun)
    store.commit(batch_id, record, token=token, settle=(Outcome.RECONCILED.value, started_ms), upstream="200")
    if store.settings.compact_events and is_final(record) and not is_final(begun.record):
        # The final state is stored: earlier snapshots' bodies are superseded.
        store.compact_events(batch_id, keep_types=TERMINAL_EVENT_TYPES)
    return Outcome.RECONCILED


def apply_fallback(store: Store, batch_id: str) -> Outcome:
    """Fold the newest stored webhook payload into the record, marked as such."""
    token = uuid.uuid4().hex
    begun = store.begin(batch_id, "", token, retrieving=False, wait=LOCK_WAIT)
    if begun is None:
        return Outcome.DEFERRED
    payload = (begun.newest_event or {}).get("payload")
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        store.unlock(batch_id, token)
        return Outcome.UNCHANGED
    record = merge(begun.record, data, source=Source.WEBHOOK_PAYLOAD)
    _stamp(record, begun)
    store.commit(batch_id, record, token=token)
    log.warning("applied webhook payload as fallback", extra={"batch_id": batch_id})
    return Outcome.FALLBACK


def track_batch(store: Store, batch: dict) -> dict:
    """Record a batch we created ourselves, before any webhook arrives; return its record.

    Under the batch's lock, like a reconcile: a worker's retrieved state
    that lands meanwhile is merged into, never overwritten.
    """
    token = uuid.uuid4().hex
    begun = store.begin(batch["id"], "", token, retrieving=False, wait=TRACK_WAIT)
    if begun is None:
        raise BatchLocked(f"batch {batch['id']} stayed locked")
    previous = begun.record
    record = merge(previous, batch, source=Source.TRACKED)
    record.setdefault("tracked_at", time.time())
    if previous is None or previous.get("source") == Source.TRACKED.value:
        record["source"] = Source.TRACKED.value
    store.commit(batch["id"], record, token=token)
    return record


def _stamp(record: dict, begun: Begun) -> None:
    """Add the run's bookkeeping: last event seen, reconcile count and time."""
    event = begun.newest_event
    if event:
        record["last_event"] = {"id": event["id"], "type": event.get("type"),
                                "received_at": iso((event.get("received_at") or 0) / 1000)}
    record["reconcile_count"] = int(record.get("reconcile_count") or 0) + 1
    record["reconciled_at"] = iso(time.time())


def _not_found(previous: dict | None, batch_id: str) -> dict:
    """Return the record of a batch the gateway does not know."""
    record = dict(previous or {"id": batch_id, "request_counts": {}, "billing": None})
    if not BatchStatus(record.get("status", "pending")).terminal:
        record["status"] = BatchStatus.NOT_FOUND.value
    record["not_found"] = True
    return record
