"""The reconciled state in Redis: events, batch records, indexes and the ledger.

Key layout (``{p}`` is the configured key prefix)::

    {p}:ev:{batch_id}       hash   event field -> packed headers + raw body (dedupe, audit), TTL = retention
    {p}:eo:{batch_id}       hash   event field -> "outcome:received_ms" (+ "{field}#d": duplicates seen)
    {p}:b:{batch_id}        hash   doc (the packed record JSON), status, final ("1"/"0"), session, model
    {p}:pending:{batch_id}  string id of the batch's queued (or scheduled), not yet started job
    {p}:recent:{batch_id}   string set for AISTATS_DEBOUNCE_MS when a worker retrieves the batch
    {p}:lock:{batch_id}     string a worker's token while it reconciles the batch
    {p}:open                zset   batches not final, by last reconcile time (the sweep reads it)
    {p}:idx:all|status:{s}|session:{id}|model:{m}   zsets by created time (the query API)
    {p}:ledger:*            the billing ledger (see scripts.COMMIT)
    {p}:m:*                 counters shared by every process (metrics)

Events are stored as ``eventlog`` describes; records are packed with ``codec``
so a batch and its events stay within a few KiB. A reconcile is two round
trips: ``begin`` (slot, lock, reads) and ``commit`` (everything else).

Writes take ``pipeline=None`` so callers can compose them into one round trip.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from redis import Redis
from redis.client import Pipeline

from . import codec, eventlog, queueing, scripts
from .config import Settings
from .errors import StoreUnavailable
from .events import Event
from .reconcile import Source, contribution, is_final, parse_time

PENDING_TTL = 900
LOCK_MARGIN_S = 10
TRACK_WAIT = 10.0  # seconds create-batch waits for a reconcile of the new batch to end
JOB_KEY = "rq:job:"


def _clean(value: str) -> str:
    # The ledger joins its attribution with '|'; keep values from splitting it.
    return value.replace("|", "/")[:200]


class Store:
    """Reads and writes of aistats-hooks' state in one Redis."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.p = settings.key_prefix
        self.queue = queueing.make_queue(redis, settings)
        self.jobs = queueing.JobTemplate(self.queue)
        self.scheduled_key = self.queue.scheduled_job_registry.key
        # A run holds the lock for one retrieve (connect + read timeouts) and a
        # few writes; a worker killed mid-run strands the batch no longer than this.
        self.lock_ttl_ms = (2 * settings.upstream_timeout + LOCK_MARGIN_S) * 1000
        constant = self.jobs.lua_fields()
        self._ingest = redis.register_script(scripts.ingest(constant))
        self._request = redis.register_script(scripts.request(constant))
        self._begin = redis.register_script(scripts.BEGIN)
        self._commit = redis.register_script(scripts.COMMIT)
        self._unlock = redis.register_script(scripts.UNLOCK)

    # -- keys ---------------------------------------------------------------
    def key(self, *parts: str) -> str:
        """Return the prefixed key made of ``parts``."""
        return ":".join((self.p, *parts))

    # -- the acknowledgement path ------------------------------------------
    def ingest(self, event: Event, body: bytes, headers: Mapping[str, str], *, ignore: bool = False) -> str:
        """Record a verified event and queue its batch in one atomic step; return the outcome."""
        job_id = queueing.new_job_id(self.settings)
        received = int(time.time() * 1000)
        packed = eventlog.pack(event, body, headers, received)
        return self._str(self._ingest(
            keys=[
                self.key("ev", event.batch_id),
                self.key("eo", event.batch_id),
                self.key("b", event.batch_id),
                self.key("pending", event.batch_id),
                JOB_KEY + job_id,
                self.queue.key,
                self.key("m", "deliveries"),
                self.key("open"),
                self.key("recent", event.batch_id),
                self.scheduled_key,
            ],
            args=[
                eventlog.field(event.id, event.batch_id), packed, received, self.settings.event_retention,
                PENDING_TTL, job_id, "ignore" if ignore else "batch", event.batch_id,
                *self.jobs.varying(event.batch_id),
            ],
        ))

    def request_reconcile(self, batch_id: str, *, debounce: bool = True, max_pending_age: int = 0) -> str:
        """Queue a reconcile of ``batch_id`` unless one is waiting; return 'queued' or 'coalesced'.

        ``debounce=False`` (a person asked) skips the wait after a recent retrieve;
        ``max_pending_age`` (the sweep's) replaces a job waiting longer than that.
        """
        job_id = queueing.new_job_id(self.settings)
        return self._str(self._request(
            keys=[self.key("pending", batch_id), JOB_KEY + job_id, self.queue.key,
                  self.key("recent", batch_id), self.scheduled_key],
            args=[PENDING_TTL, job_id, *self.jobs.varying(batch_id), int(time.time() * 1000), int(debounce),
                  max_pending_age],
        ))

    def count_rejection(self, reason: str) -> None:
        """Count a refused delivery by reason (for /metrics)."""
        self.redis.hincrby(self.key("m", "rejected"), reason[:40], 1)

    def get(self, batch_id: str) -> dict | None:
        """Return the reconciled record of ``batch_id``, or None."""
        doc = self.redis.hget(self.key("b", batch_id), "doc")
        return json.loads(codec.unpack(doc)) if doc else None

    def get_many(self, batch_ids: list[str]) -> list[dict | None]:
        """Return the records of ``batch_ids`` in order (None where unknown)."""
        pipe = self.redis.pipeline(transaction=False)
        for batch_id in batch_ids:
            pipe.hget(self.key("b", batch_id), "doc")
        return [json.loads(codec.unpack(doc)) if doc else None for doc in pipe.execute()]

    # -- the worker path: begin, then commit (or unlock) -------------------
    def begin(
        self, batch_id: str, job_id: str, token: str, *, retrieving: bool = True, wait: float = 0.0
    ) -> Begun | None:
        """Free the job's pending slot, take the batch's lock, read record and newest event.

        ``retrieving`` starts the debounce window (a retrieve follows); ``wait``
        is how long to wait for another worker's run to end. Returns None when
        the lock is still held then.
        """
        deadline = time.monotonic() + wait
        pause = 0.01
        while (begun := self._try_begin(batch_id, job_id, token, retrieving)) is None:
            if time.monotonic() >= deadline:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.25)
        return begun

    def _try_begin(self, batch_id: str, job_id: str, token: str, retrieving: bool) -> Begun | None:
        """Run the BEGIN script once."""
        reply = self._begin(
            keys=[self.key("pending", batch_id), self.key("lock", batch_id), self.key("b", batch_id),
                  self.key("eo", batch_id), self.key("ev", batch_id), self.key("recent", batch_id)],
            args=[job_id, token, self.lock_ttl_ms, self.settings.debounce_ms if retrieving else 0],
        )
        if not reply[0]:
            return None
        doc, field, blob = reply[1], reply[2], reply[3]
        newest = eventlog.decode(batch_id, self._str(field), blob, {}) if field and blob else None
        return Begun(json.loads(codec.unpack(doc)) if doc else None, newest)

    def commit(
        self,
        batch_id: str,
        record: dict | None,
        *,
        token: str = "",
        settle: tuple[str, int] | None = None,
        upstream: str = "",
        pipeline: Pipeline | None = None,
    ) -> None:
        """Write ``record`` (when given) with indexes and ledger, settle events, count, unlock: atomically."""
        args: list = [self.p, batch_id] + (_record_args(record) if record else [""] * 12)
        outcome, until_ms = settle or ("", 0)
        args += [until_ms, outcome, token, upstream]
        self._commit(
            keys=[self.key("b", batch_id), self.key("eo", batch_id), self.key("lock", batch_id),
                  self.key("ledger", "contrib"), self.key("open"), self.key("m", "upstream")],
            args=args,
            client=pipeline if pipeline is not None else self.redis,
        )

    def unlock(self, batch_id: str, token: str) -> None:
        """Release the batch's lock if ``token`` still holds it."""
        self._unlock(keys=[self.key("lock", batch_id)], args=[token])

    def save(self, record: dict, previous: dict | None = None, *, pipeline: Pipeline | None = None) -> None:
        """Write a record with its indexes and ledger contribution (no lock, no events)."""
        self.commit(record["id"], record, pipeline=pipeline)

    def track(self, batch: dict) -> dict:
        """Record a batch we created ourselves, before any webhook arrives.

        Under the batch's lock, like a reconcile: a worker's retrieved state
        that lands meanwhile is merged into, never overwritten.
        """
        from .reconcile import merge

        token = uuid.uuid4().hex
        begun = self.begin(batch["id"], "", token, retrieving=False, wait=TRACK_WAIT)
        if begun is None:
            raise StoreUnavailable(f"batch {batch['id']} stayed locked")
        previous = begun.record
        record = merge(previous, batch, source=Source.TRACKED)
        record.setdefault("tracked_at", time.time())
        if previous is None or previous.get("source") == Source.TRACKED.value:
            record["source"] = Source.TRACKED.value
        self.commit(batch["id"], record, token=token)
        return record

    # -- events -------------------------------------------------------------
    def events(self, batch_id: str) -> list[dict]:
        """Return the batch's stored events with their decoded bodies, oldest first."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.key("ev", batch_id))
        pipe.hgetall(self.key("eo", batch_id))
        packed, states = pipe.execute()
        states = {self._str(k): self._str(v) for k, v in states.items()}
        events = [eventlog.decode(batch_id, self._str(f), blob, states) for f, blob in packed.items()]
        return sorted(events, key=lambda e: (e["received_at"], e["id"]))

    def event(self, event_id: str, batch_id: str | None = None) -> dict | None:
        """Return one stored event (its batch inferred from the id when not given), or None."""
        candidates = [batch_id] if batch_id else self._batches_of(event_id)
        for candidate in candidates:
            found = next((e for e in self.events(candidate) if e["id"] == event_id), None)
            if found:
                found["batch_id"] = candidate
                return found
        return None

    def _batches_of(self, event_id: str) -> list[str]:
        """Return the stored batches an ``evt_batch_{batch}_{key}`` id may belong to."""
        rest = event_id.removeprefix("evt_batch_")
        cuts = [i for i, c in enumerate(rest) if c == "_"]
        candidates = [rest[:i] for i in cuts] or [rest]
        pipe = self.redis.pipeline(transaction=False)
        for candidate in candidates:
            pipe.exists(self.key("ev", candidate))
        return [c for c, hit in zip(candidates, pipe.execute()) if hit]

    def compact_events(self, batch_id: str, keep_types: set[str]) -> int:
        """Drop the bodies of a final batch's events whose type is not in ``keep_types``."""
        packed = self.redis.hgetall(self.key("ev", batch_id))
        stripped = {name: small for name, blob in packed.items()
                    if (small := eventlog.strip_body(blob, keep_types)) is not None}
        if stripped:
            # Fields only, never new ones: an event that arrives meanwhile is untouched.
            self.redis.hset(self.key("ev", batch_id), mapping=stripped)
        return len(stripped)

    def due_for_sweep(self, older_than: float, *, limit: int = 500) -> list[str]:
        """Return open batches last reconciled before ``older_than`` (unix seconds)."""
        return [self._str(b) for b in self.redis.zrangebyscore(self.key("open"), "-inf", older_than, 0, limit)]

    def counters(self, name: str) -> dict[str, int]:
        """Return a shared counter hash (e.g. 'deliveries', 'rejected', 'upstream')."""
        return {self._str(k): int(v) for k, v in self.redis.hgetall(self.key("m", name)).items()}

    def incr(self, name: str, field: str, amount: int = 1, *, pipeline: Pipeline | None = None) -> None:
        """Add to a shared counter."""
        (pipeline if pipeline is not None else self.redis).hincrby(self.key("m", name), field, amount)

    @staticmethod
    def _str(value: bytes | str) -> str:
        return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Begun:
    """What a reconcile starts from: the record and the newest stored event."""

    record: dict | None
    newest_event: dict | None


def _record_args(record: dict) -> list:
    """Return COMMIT's ARGV[3..14] for ``record``."""
    created = parse_time(record.get("created_at")) or parse_time(record.get("tracked_at")) or time.time()
    final = is_final(record)
    open_score = "" if final or record["status"] == "not_found" else time.time()
    nanos, groups = contribution(record)
    return [
        codec.pack(json.dumps(record, separators=(",", ":"), sort_keys=True).encode()),
        record["status"], "1" if final else "0",
        str(record.get("session_id") or ""), str(record.get("model") or ""), int(created * 1000), open_score,
        nanos, groups["day"], *(_clean(groups[k]) for k in ("session_id", "model", "provider")),
    ]
