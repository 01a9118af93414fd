"""The reconciled state in Redis: events, batch records, indexes and the ledger.

Key layout (``{p}`` is the configured key prefix)::

    {p}:ev:{batch_id}       hash   event field -> packed headers + raw body (dedupe, audit), TTL = retention
    {p}:eo:{batch_id}       hash   event field -> "outcome:received_ms" (+ "{field}#d": duplicates seen)
    {p}:b:{batch_id}        hash   doc (the packed record JSON), status, final ("1"/"0")
    {p}:pending:{batch_id}  string id of the batch's queued, not yet started job
    {p}:lock:{batch_id}     lock   held while a worker reconciles the batch
    {p}:open                zset   batches not final, by last reconcile time (the sweep reads it)
    {p}:idx:all|status:{s}|session:{id}|model:{m}   zsets by created time (the query API)
    {p}:ledger:*            the billing ledger (see scripts.LEDGER)
    {p}:m:*                 counters shared by every process (metrics)

An event's field is its id with the redundant ``evt_batch_{batch_id}_`` prefix
cut to ``~`` (ids repeat the batch id); bodies and records are packed with
``codec`` so a batch and its events stay within a few KiB.

Writes take ``pipeline=None`` so callers can compose them into one round trip.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from redis import Redis
from redis.client import Pipeline
from redis.lock import Lock

from . import codec, queueing, scripts
from .config import Settings
from .events import Event, phaseo_headers
from .reconcile import Source, contribution, is_final, parse_time

PENDING_TTL = 900
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
        constant = self.jobs.lua_fields()
        self._ingest = redis.register_script(scripts.ingest(constant))
        self._request = redis.register_script(scripts.request(constant))
        self._release = redis.register_script(scripts.RELEASE_PENDING)
        self._ledger = redis.register_script(scripts.LEDGER)
        self._mark = redis.register_script(scripts.MARK_EVENTS)

    # -- keys ---------------------------------------------------------------
    def key(self, *parts: str) -> str:
        """Return the prefixed key made of ``parts``."""
        return ":".join((self.p, *parts))

    # -- the acknowledgement path ------------------------------------------
    def ingest(self, event: Event, body: bytes, headers: Mapping[str, str], *, ignore: bool = False) -> str:
        """Record a verified event and queue its batch in one atomic step; return the outcome."""
        job_id = queueing.new_job_id(self.settings)
        received = int(time.time() * 1000)
        meta = {"t": event.type, "k": event.delivery_key, "a": event.attempt, "r": received}
        derived = _derived_headers(event.id, meta)
        # Headers that merely repeat the payload are rebuilt on read, not stored.
        meta["h"] = {k: v for k, v in phaseo_headers(headers).items() if derived.get(k) != v}
        packed = codec.pack(json.dumps(meta, separators=(",", ":")).encode() + b"\n" + body)
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
            ],
            args=[
                event_field(event.id, event.batch_id), packed, received, self.settings.event_retention,
                PENDING_TTL, job_id, "ignore" if ignore else "batch", event.batch_id,
                *self.jobs.varying(event.batch_id),
            ],
        ))

    def request_reconcile(self, batch_id: str) -> str:
        """Queue a reconcile of ``batch_id`` unless one is waiting; return 'queued' or 'coalesced'."""
        job_id = queueing.new_job_id(self.settings)
        return self._str(self._request(
            keys=[self.key("pending", batch_id), JOB_KEY + job_id, self.queue.key],
            args=[PENDING_TTL, job_id, *self.jobs.varying(batch_id)],
        ))

    def count_rejection(self, reason: str) -> None:
        """Count a refused delivery by reason (for /metrics)."""
        self.redis.hincrby(self.key("m", "rejected"), reason[:40], 1)

    # -- the worker path ----------------------------------------------------
    def release_pending(self, batch_id: str, job_id: str) -> bool:
        """Free the batch's pending slot if ``job_id`` holds it."""
        return bool(self._release(keys=[self.key("pending", batch_id)], args=[job_id]))

    def lock(self, batch_id: str, *, timeout: float = queueing.JOB_TIMEOUT, blocking_timeout: float = 10) -> Lock:
        """Return the lock that keeps two workers off the same batch."""
        return self.redis.lock(self.key("lock", batch_id), timeout=timeout, blocking_timeout=blocking_timeout)

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

    def save(self, record: dict, previous: dict | None = None, *, pipeline: Pipeline | None = None) -> None:
        """Write a record, its indexes and its ledger contribution atomically."""
        pipe = pipeline if pipeline is not None else self.redis.pipeline(transaction=True)
        batch_id = record["id"]
        final = is_final(record)
        pipe.hset(self.key("b", batch_id), mapping={
            "doc": codec.pack(json.dumps(record, separators=(",", ":"), sort_keys=True).encode()),
            "status": record["status"],
            "final": "1" if final else "0",
        })
        created = parse_time(record.get("created_at")) or parse_time(record.get("tracked_at")) or time.time()
        score = int(created * 1000)
        pipe.zadd(self.key("idx", "all"), {batch_id: score})
        if previous and previous.get("status") != record["status"]:
            pipe.zrem(self.key("idx", "status", previous["status"]), batch_id)
        pipe.zadd(self.key("idx", "status", record["status"]), {batch_id: score})
        for name, field in (("session", "session_id"), ("model", "model")):
            old, new = (previous or {}).get(field), record.get(field)
            if old and old != new:
                pipe.zrem(self.key("idx", name, str(old)), batch_id)
            if new:
                pipe.zadd(self.key("idx", name, str(new)), {batch_id: score})
        if final or record["status"] == "not_found":
            pipe.zrem(self.key("open"), batch_id)
        else:
            pipe.zadd(self.key("open"), {batch_id: time.time()})
        nanos, groups = contribution(record)
        self._ledger(
            keys=[self.key("ledger", "contrib")],
            args=[self.p, batch_id, nanos, groups["day"], *(_clean(groups[k]) for k in ("session_id", "model", "provider"))],
            client=pipe,
        )
        if pipeline is None:
            pipe.execute()

    def mark_events(self, batch_id: str, outcome: str, *, until_ms: int, pipeline: Pipeline | None = None) -> None:
        """Settle the outcome of the batch's waiting events received up to ``until_ms``."""
        self._mark(
            keys=[self.key("eo", batch_id)],
            args=[until_ms, outcome],
            client=pipeline if pipeline is not None else self.redis,
        )

    def track(self, batch: dict, *, pipeline: Pipeline | None = None) -> dict:
        """Record a batch we created ourselves, before any webhook arrives."""
        from .reconcile import merge

        previous = self.get(batch["id"])
        record = merge(previous, batch, source=Source.TRACKED)
        record.setdefault("tracked_at", time.time())
        if previous is None or previous.get("source") == Source.TRACKED.value:
            record["source"] = Source.TRACKED.value
        self.save(record, previous, pipeline=pipeline)
        return record

    # -- events -------------------------------------------------------------
    def events(self, batch_id: str) -> list[dict]:
        """Return the batch's stored events with their decoded bodies, oldest first."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.key("ev", batch_id))
        pipe.hgetall(self.key("eo", batch_id))
        packed, states = pipe.execute()
        states = {self._str(k): self._str(v) for k, v in states.items()}
        events = [self._decode_event(batch_id, self._str(f), blob, states) for f, blob in packed.items()]
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

    def latest_payload(self, batch_id: str) -> tuple[dict | None, dict | None]:
        """Return the newest stored event of the batch and its ``data`` object."""
        for event in reversed(self.events(batch_id)):
            data = (event.get("payload") or {}).get("data") if isinstance(event.get("payload"), dict) else None
            if isinstance(data, dict):
                return event, data
        return None, None

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

    @staticmethod
    def _decode_event(batch_id: str, field: str, blob: bytes, states: dict[str, str]) -> dict:
        meta_line, _, body = codec.unpack(blob).partition(b"\n")
        meta = json.loads(meta_line)
        outcome, _, _ = states.get(field, "unknown:").partition(":")
        text = body.decode("utf-8", "replace")
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        event = {
            "id": event_id(field, batch_id),
            "type": meta.get("t"),
            "key": meta.get("k"),
            "attempt": meta.get("a"),
            "received_at": meta.get("r"),
            "outcome": outcome,
            "duplicates": int(states.get(field + "#d", 0)),
            "headers": {**_derived_headers(event_id(field, batch_id), meta), **meta.get("h", {})},
            "body": text,
            "payload": payload,
        }
        return event


def _derived_headers(event_id: str, meta: dict) -> dict[str, str]:
    """Return the x-phaseo-* headers a delivery of this event carries by definition."""
    derived = {"x-phaseo-event-id": event_id, "x-phaseo-event-type": meta.get("t") or ""}
    if meta.get("k"):
        derived["x-phaseo-delivery-key"] = meta["k"]
    if meta.get("a") is not None:
        derived["x-phaseo-attempt"] = str(meta["a"])
    return derived


def event_field(event_id: str, batch_id: str) -> str:
    """Return the compact hash field for ``event_id`` within its batch."""
    prefix = f"evt_batch_{batch_id}_"
    return "~" + event_id[len(prefix):] if event_id.startswith(prefix) else event_id


def event_id(field: str, batch_id: str) -> str:
    """Invert ``event_field``."""
    return f"evt_batch_{batch_id}_{field[1:]}" if field.startswith("~") else field
