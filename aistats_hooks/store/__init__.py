"""aistats-hooks' state in one Redis, one module per concept; ``Store`` wires them together.

    ingest      the acknowledgement path: record a delivery, then ensure its batch's job (two steps)
    coalesce    at most one waiting job per batch: the pending slot, shared with ingest
    locks       a reconcile's start: pending slot, lock, reads (BEGIN), and UNLOCK
    commit      a reconcile's end: record, indexes, ledger, event outcomes, lock (COMMIT)
    records     reads of records and their indexes
    ledger      reads of the billing ledger
    deliveries  a batch's stored deliveries: list, find, compact
    sweep       the open-batch set
    counters    counters shared by every process
    script      the base of every Lua script

Key names live in ``aistats_hooks.keys``; RQ's stay RQ's (``queueing`` uses its public API).
``Store`` is a thin facade: one object per process holding the registered
scripts, with the few calls the web app, workers and CLI make; read models
use its parts (``store.records``, ``store.ledger``, ...) directly.
"""

from __future__ import annotations

from collections.abc import Mapping

from redis import Redis
from redis.client import Pipeline

from .. import queueing
from ..config import Settings
from ..rules.delivery import Event
from ..keys import Keys
from .coalesce import Requests
from .commit import CommitScript, RecordRow
from .counters import Counters
from .deliveries import Deliveries
from .ingest import Ingest
from .ledger import Ledger
from .locks import Begun, Locks
from .records import Records
from .sweep import OpenBatches

__all__ = ["Begun", "Store"]


class Store:
    """The parts of aistats-hooks' state on one Redis, for one settings."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.queue = queueing.make_queue(redis, settings)

        def new_job_id() -> str:
            return queueing.new_job_id(settings)

        self._ingest = Ingest(redis, self.keys, self.queue, settings.event_retention, new_job_id,
                              min_replicas=settings.min_replicas, replica_timeout_ms=settings.replica_timeout_ms,
                              max_events=settings.max_batch_events, max_bytes=settings.max_batch_bytes)
        self.requests = Requests(redis, self.keys, self.queue, new_job_id)
        self.locks = Locks(redis, self.keys, upstream_timeout=settings.upstream_timeout,
                           debounce_ms=settings.debounce_ms)
        self._commit = CommitScript(redis, settings.changes_maxlen)
        self.records = Records(redis, self.keys)
        self.ledger = Ledger(redis, self.keys)
        self.deliveries = Deliveries(redis, self.keys)
        self.open_batches = OpenBatches(redis, self.keys)
        self.counter_hashes = Counters(redis, self.keys)

    # -- the acknowledgement path and reconcile requests ---------------------
    def ingest(self, event: Event, body: bytes, headers: Mapping[str, str], *, ignore: bool = False,
               traceparent: str | None = None) -> str:
        """Record a verified event and ensure its batch's reconcile job; return the outcome.

        ``traceparent`` (tracing on) is kept beside the batch in the same step, for its reconcile's span.
        """
        return self._ingest.ingest(event, body, headers, ignore=ignore, traceparent=traceparent)

    def request_reconcile(self, batch_id: str, *, debounce: bool = True, max_pending_age: int = 0) -> str:
        """Queue a reconcile of ``batch_id`` unless one is waiting; return 'queued' or 'coalesced'."""
        return self.requests.request(batch_id, debounce=debounce, max_pending_age=max_pending_age)

    def forget(self, batch_id: str, *, force: bool = False):
        """Drop a batch's record, events and index entries (its settled ledger share only with ``force``)."""
        from .forget import forget

        return forget(self.redis, self.keys, batch_id, force=force)

    def count_rejection(self, reason: str) -> None:
        """Count a refused delivery by reason (for /metrics)."""
        self.counter_hashes.incr("rejected", reason[:40])

    # -- a reconcile run: begin, then commit (or unlock) ----------------------
    def begin(self, batch_id: str, job_id: str, token: str, *, retrieving: bool = True,
              wait: float = 0.0) -> Begun | None:
        """Free the job's pending slot, take the batch's lock, read record and newest event (``Locks.begin``)."""
        return self.locks.begin(batch_id, job_id, token, retrieving=retrieving, wait=wait)

    def commit(
        self,
        batch_id: str,
        record: dict | None,
        *,
        token: str = "",
        settle: tuple[str, int] | None = None,
        upstream: str = "",
        pipeline: Pipeline | None = None,
    ) -> bool:
        """Write ``record`` (when given) with indexes and ledger, settle events, count, unlock: atomically.

        False when ``token`` no longer held the lock: nothing was written (``CommitScript.call``).
        """
        row = RecordRow.of(record) if record else None
        if self.settings.min_replicas and pipeline is None:
            # A reconcile is done only once AISTATS_MIN_REPLICAS replicas have it, as a delivery is
            # acknowledged only then: one that is not replicated raises NotReplicated and the job retries.
            return self._commit.call_replicated(self.keys, batch_id, row=row, settle=settle, token=token,
                                                upstream=upstream, replicas=self.settings.min_replicas,
                                                timeout_ms=self.settings.replica_timeout_ms)
        return self._commit.call(self.keys, batch_id, row=row, settle=settle, token=token, upstream=upstream,
                                 client=pipeline)

    def unlock(self, batch_id: str, token: str) -> None:
        """Release the batch's lock if ``token`` still holds it."""
        self.locks.unlock(batch_id, token)

    def save(self, record: dict, *, pipeline: Pipeline | None = None) -> None:
        """Write a record with its indexes and ledger contribution (no lock, no events)."""
        self.commit(record["id"], record, pipeline=pipeline)

    # -- reads ------------------------------------------------------------------
    def get(self, batch_id: str) -> dict | None:
        """Return the reconciled record of ``batch_id``, or None."""
        return self.records.get(batch_id)

    def get_many(self, batch_ids: list[str]) -> list[dict | None]:
        """Return the records of ``batch_ids`` in order (None where unknown)."""
        return self.records.get_many(batch_ids)

    def events(self, batch_id: str) -> list[dict]:
        """Return the batch's stored events, oldest first."""
        return self.deliveries.of_batch(batch_id)

    def event(self, event_id: str, batch_id: str) -> dict | None:
        """Return one stored event of ``batch_id``, or None."""
        return self.deliveries.find(event_id, batch_id)

    def compact_events(self, batch_id: str, keep_types: set[str]) -> int:
        """Drop the bodies of a final batch's events whose type is not in ``keep_types``."""
        return self.deliveries.compact(batch_id, keep_types)

    def due_for_sweep(self, older_than: float | str, *, limit: int = 500) -> list[str]:
        """Return open batches last reconciled before ``older_than`` (unix seconds)."""
        return self.open_batches.due(older_than, limit=limit)

    def counters(self, name: str) -> dict[str, int]:
        """Return a shared counter hash (e.g. 'deliveries', 'rejected', 'upstream')."""
        return self.counter_hashes.read(name)

    def incr(self, name: str, field: str, amount: int = 1, *, pipeline: Pipeline | None = None) -> None:
        """Add to a shared counter."""
        self.counter_hashes.incr(name, field, amount, pipeline=pipeline)
