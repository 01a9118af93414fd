"""Bring one batch's record in line with the gateway: the body of a reconcile job.

Two Redis round trips around one upstream call: ``Store.begin`` frees the
job's pending slot, takes the batch's lock and reads the record and newest
event; ``Store.commit`` writes everything and releases the lock, atomically.
The retrieved batch object is the truth; a webhook payload is only a hint,
used as a marked, provisional fallback when the gateway cannot be reached
(``merge``: the next retrieve wins over it). RQ-specific concerns (retries,
Retry-After) stay in ``workers.jobs``.

Every path releases the lock: a value the merge rules or COMMIT refuse (an
amount out of range, ...) is recorded on the batch as ``error`` with its
previous state kept (``Outcome.INVALID``), never raised with the lock held. A
404 is believed only after ``NOT_FOUND_ATTEMPTS`` misses spread over minutes
(``not_found``: a burst of runs counts once; ``NotFoundYet`` before that, which
the job retries later); an id the SDK refuses to send (``.``, ``..``, a slash)
is marked ``not_found`` at once.
A run whose lock expired writes nothing (COMMIT checks the token).
"""

from __future__ import annotations

import logging
import time
import uuid
from enum import Enum

from . import upstream_health
from .rules import not_found
from .rules.delivery import TERMINAL_EVENT_TYPES
from .errors import AIStatsError, BatchLocked, InvalidRequestError, NotFoundError
from .rules.merge import is_final, merge
from .sdk import AIStats
from .rules.status import BatchStatus, Source, normalize_status
from .store import Begun, Store
from .rules.timestamps import iso

log = logging.getLogger("aistats_hooks.reconcile")
# Seconds a run waits for another worker's run of the same batch before
# handing over to a follow-up job (which the lock holder's events also queue).
LOCK_WAIT = 2.0
TRACK_WAIT = 10.0  # seconds create-batch waits for a reconcile of the new batch to end
# A batch just created can be briefly unknown to a replica: believe a 404 only
# after this many misses, spread over minutes (not_found.SPACING).
NOT_FOUND_ATTEMPTS = not_found.attempts()
# The wall clock misses are dated by; tests replace it to move time on.
clock = time.time
# What a value the rules refuse raises; caught and recorded on the batch.
_POISON = (ValueError, TypeError, OverflowError, RecursionError)


class NotFoundYet(NotFoundError):
    """The gateway answered 404, but not yet ``NOT_FOUND_ATTEMPTS`` spread misses: check again in ``retry_in`` s."""

    def __init__(self, batch_id: str, misses: int, retry_in: float = 0.0) -> None:
        super().__init__(f"batch {batch_id} not found ({misses} of {NOT_FOUND_ATTEMPTS})", status=404)
        self.misses = misses
        self.retry_in = retry_in


class Outcome(str, Enum):
    """What a reconcile run did."""

    RECONCILED = "reconciled"
    UNCHANGED = "unchanged"
    SKIPPED_FINAL = "skipped_final"
    NOT_FOUND = "not_found"
    DEFERRED = "deferred"
    FALLBACK = "fallback"
    INVALID = "invalid"
    LOCK_LOST = "lock_lost"
    PROVISIONAL = "provisional"
    SUPERSEDED = "superseded"


# Deliveries whose payload starts (or moves) a provisional record without a retrieve: the gateway's
# terminal delivery, discovery or the sweep bring the one retrieve a batch's lifecycle needs.
PROVISIONAL_TYPES = frozenset(f"{family}.{kind}" for family in ("batch", "job") for kind in ("created", "progress"))
UNSETTLED = ("queued", "coalesced")


def reconcile_batch(store: Store, client: AIStats, batch_id: str, *, job_id: str = "", force: bool = False) -> Outcome:
    """Retrieve ``batch_id`` and fold it into its record; raise upstream errors to the caller."""
    token = uuid.uuid4().hex
    started_ms = int(time.time() * 1000)
    begun = store.begin(batch_id, job_id, token, wait=LOCK_WAIT)
    if begun is None:
        # Another worker holds the batch; make sure one run follows it.
        store.request_reconcile(batch_id)
        return Outcome.DEFERRED
    if begun.ran_ahead and not (begun.unsettled or force):
        # This job's batch was reconciled ahead of it (workers/drain.py) and nothing came since.
        store.unlock(batch_id, token)
        return Outcome.SUPERSEDED
    if is_final(begun.record) and not force:
        store.commit(batch_id, None, token=token, settle=(Outcome.SKIPPED_FINAL.value, started_ms))
        return Outcome.SKIPPED_FINAL
    data = None if force else _provisional_data(store, batch_id, begun)
    if data is not None:
        return _provisional(store, batch_id, begun, token, started_ms, data)
    try:
        batch = client.retrieve_batch(batch_id)
    except NotFoundError:
        upstream_health.ok(store.redis, store.keys)  # the gateway answered, about this batch
        return _missed(store, batch_id, begun, token, started_ms)
    except InvalidRequestError as exc:
        if exc.status is not None:
            store.commit(batch_id, None, token=token, upstream=str(exc.status))
            raise
        # Refused before sending: the id cannot name a batch. Mark it and drop it from the sweep.
        record = _not_found(begun.record, batch_id, force=True)
        record["not_found_misses"] = NOT_FOUND_ATTEMPTS
        record["error"] = _error("invalid_batch_id", exc)
        _stamp(record, begun)
        _commit(store, batch_id, record, token, (Outcome.INVALID.value, started_ms), "")
        return Outcome.INVALID
    except AIStatsError as exc:
        # No record to write: count the call and release the lock, in one step.
        upstream_health.failed(store.redis, store.keys, exc)
        store.commit(batch_id, None, token=token, upstream=str(exc.status or type(exc).__name__))
        raise
    except BaseException:
        store.unlock(batch_id, token)
        raise
    upstream_health.ok(store.redis, store.keys)
    try:
        record = merge(begun.record, batch, source=Source.RETRIEVE)
        record.pop("error", None)
        record.pop(not_found.CHECKED_AT, None)  # found: earlier misses are no evidence any more
        _stamp(record, begun)
        if not _commit(store, batch_id, record, token, (Outcome.RECONCILED.value, started_ms), "200"):
            return Outcome.LOCK_LOST
    except _POISON as exc:
        return _invalid(store, batch_id, begun, token, started_ms, exc, upstream="200")
    if store.settings.compact_events and is_final(record) and not is_final(begun.record):
        # The final state is stored: earlier snapshots' bodies are superseded.
        store.compact_events(batch_id, keep_types=TERMINAL_EVENT_TYPES)
    return Outcome.RECONCILED


def _provisional_data(store: Store, batch_id: str, begun: Begun) -> dict | None:
    """The payload to start or move a provisional record from, when nothing calls for a retrieve.

    Only when this run was asked for by deliveries (an unsettled one is the newest), each of them a
    ``created`` or ``progress`` one whose payload names this batch in a status that is not final. A
    terminal delivery, a payload that disagrees with its type, or a run with no new delivery (discovery,
    the sweep, the CLI) retrieves.
    """
    if not begun.newest_event:
        return None
    unsettled = [e for e in store.events(batch_id) if e.get("outcome") in UNSETTLED]
    if not unsettled or any(e.get("type") not in PROVISIONAL_TYPES for e in unsettled):
        return None
    payload = unsettled[-1].get("payload")  # events come oldest first
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict) or data.get("id") != batch_id:
        return None
    try:
        if normalize_status(data.get("status"), data.get("lifecycle_status")).terminal:
            return None  # a created/progress delivery reporting a final status: ask the gateway
    except (ValueError, TypeError, AttributeError):
        return None
    return data


def _provisional(store: Store, batch_id: str, begun: Begun, token: str, started_ms: int, data: dict) -> Outcome:
    try:
        record = merge(begun.record, data, source=Source.WEBHOOK_PAYLOAD)
        _stamp(record, begun)
        if not _commit(store, batch_id, record, token, (Outcome.PROVISIONAL.value, started_ms), ""):
            return Outcome.LOCK_LOST
    except _POISON as exc:
        return _invalid(store, batch_id, begun, token, started_ms, exc)
    return Outcome.PROVISIONAL


def _commit(store: Store, batch_id: str, record: dict, token: str, settle: tuple[str, int] | None,
            upstream: str) -> bool:
    """COMMIT ``record``; False when the lock was lost meanwhile (nothing written: a follow-up is queued)."""
    if store.commit(batch_id, record, token=token, settle=settle, upstream=upstream) is False:
        log.warning("lock expired during the run; nothing written", extra={"batch_id": batch_id})
        store.request_reconcile(batch_id)
        return False
    return True


def _invalid(store: Store, batch_id: str, begun: Begun, token: str, started_ms: int, exc: BaseException,
             *, upstream: str = "") -> Outcome:
    """Keep the previous state, record why the new one was refused, release the lock."""
    log.warning("refused a value: %s", str(exc)[:200], extra={"batch_id": batch_id})
    record = dict(begun.record or {"id": batch_id, "status": "pending", "request_counts": {}, "billing": None})
    record["error"] = _error("invalid_value", exc)
    _stamp(record, begun)
    try:
        _commit(store, batch_id, record, token, (Outcome.INVALID.value, started_ms), upstream)
    except _POISON:
        store.unlock(batch_id, token)
    return Outcome.INVALID


def _missed(store: Store, batch_id: str, begun: Begun, token: str, started_ms: int) -> Outcome:
    """Count a 404 (at most one per spacing: ``not_found``); mark the batch ``not_found`` once believed."""
    previous = begun.record
    miss = not_found.count_miss((previous or {}).get(not_found.MISSES), (previous or {}).get(not_found.CHECKED_AT),
                                clock())
    if not miss.believed:
        if not miss.counted:  # nothing new to write: release the lock, count the call, check again later
            store.commit(batch_id, None, token=token, upstream="404")
            raise NotFoundYet(batch_id, miss.misses, miss.retry_in)
        record = dict(previous or {"id": batch_id, "status": "pending", "request_counts": {}, "billing": None})
        record[not_found.MISSES], record[not_found.CHECKED_AT] = miss.misses, miss.checked_at
        _stamp(record, begun)
        if _commit(store, batch_id, record, token, None, "404"):
            raise NotFoundYet(batch_id, miss.misses, miss.retry_in)
        return Outcome.LOCK_LOST
    record = _not_found(previous, batch_id)
    record[not_found.MISSES], record[not_found.CHECKED_AT] = miss.misses, miss.checked_at
    _stamp(record, begun)
    if not _commit(store, batch_id, record, token, (Outcome.NOT_FOUND.value, started_ms), "404"):
        return Outcome.LOCK_LOST
    return Outcome.NOT_FOUND


def _error(reason: str, exc: BaseException) -> dict:
    return {"reason": reason, "message": (str(exc) or type(exc).__name__)[:300], "at": iso(time.time())}


def apply_fallback(store: Store, batch_id: str) -> Outcome:
    """Fold the newest stored webhook payload into the record, marked as such."""
    token = uuid.uuid4().hex
    begun = store.begin(batch_id, "", token, retrieving=False, wait=LOCK_WAIT)
    if begun is None:
        return Outcome.DEFERRED
    payload = (begun.newest_event or {}).get("payload")
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict) or is_final(begun.record):  # a final record needs no hint
        store.unlock(batch_id, token)
        return Outcome.UNCHANGED
    try:
        record = merge(begun.record, data, source=Source.WEBHOOK_PAYLOAD)
        _stamp(record, begun)
        if not _commit(store, batch_id, record, token, None, ""):
            return Outcome.LOCK_LOST
    except _POISON as exc:
        return _invalid(store, batch_id, begun, token, int(time.time() * 1000), exc)
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
    try:
        record = merge(previous, batch, source=Source.TRACKED)
        record.setdefault("tracked_at", iso(time.time()))
        if previous is None or previous.get("source") == Source.TRACKED.value:
            record["source"] = Source.TRACKED.value
        store.commit(batch["id"], record, token=token)
    except BaseException:
        store.unlock(batch["id"], token)
        raise
    return record


def _stamp(record: dict, begun: Begun) -> None:
    """Add the run's bookkeeping: last event seen, reconcile count and time."""
    event = begun.newest_event
    if event:
        record["last_event"] = {"id": event["id"], "type": event.get("type"),
                                "received_at": iso((event.get("received_at") or 0) / 1000)}
    record["reconcile_count"] = int(record.get("reconcile_count") or 0) + 1
    record["reconciled_at"] = iso(time.time())


def _not_found(previous: dict | None, batch_id: str, *, force: bool = False) -> dict:
    """Return the record of a batch the gateway does not know (``force``: even over a terminal status)."""
    record = dict(previous or {"id": batch_id, "request_counts": {}, "billing": None})
    if force or not BatchStatus(record.get("status", "pending")).terminal:
        record["status"] = BatchStatus.NOT_FOUND.value
    record["not_found"] = True
    return record
