"""The fake gateway's state: files, batches and their lifecycle on the sandbox clock."""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .batch import Batch, iso, lifecycle_of, pending_billing
from .clock import SimClock
from .events import Event, batch_event, progress_bucket, stale_progress
from .faults import parse_fault_rates, retrieve_fault
from .lifecycle import begin_cancel, finish, make_plan, new_id, next_step, raise_counts, request_total
from .stats import Stats
from .validation import ApiError, CreateRequest
from .webhook import Webhook

MODELS = ("openai/gpt-5-mini", "openai/gpt-5-nano", "anthropic/claude-haiku-4-5", "google/gemini-2.5-flash")
# Simulated seconds from a cancel request to the cancelled status.
CANCEL_SECONDS = 10.0


class Gateway:
    """Everything the sandbox gateway knows, advanced by ``tick()``."""

    def __init__(
        self,
        api_key: str,
        *,
        speed: float = 1.0,
        seed: int | None = None,
        faults: str | Mapping[str, float] | None = None,
        slow_seconds: float = 2.0,
        public_url: str = "http://127.0.0.1",
        clock: SimClock | None = None,
    ) -> None:
        self.api_key = api_key
        self.clock = clock or SimClock(speed)
        self.seed = seed
        self.fault_rates = parse_fault_rates(faults)
        self.slow_seconds = slow_seconds
        self.public_url = public_url.rstrip("/")
        self.stats = Stats()
        # Set by the server to hand new events to the deliverer.
        self.on_events: Callable[[list[Event]], None] | None = None
        self._lock = threading.RLock()
        self._batches: dict[str, Batch] = {}
        self._order: list[str] = []
        self._files: dict[str, dict[str, Any]] = {}
        self._due: list[tuple[float, int, str, int]] = []
        self._seq = itertools.count()
        self._created = itertools.count()

    # -- files -----------------------------------------------------------

    def upload_file(self, filename: str, purpose: str, content: bytes) -> dict[str, Any]:
        """Store an uploaded file's metadata and count its JSONL lines."""
        lines = sum(1 for line in content.splitlines() if line.strip())
        record = {
            "id": new_id("file"),
            "object": "file",
            "purpose": purpose,
            "filename": filename,
            "bytes": len(content),
            "created_at": int(self.clock.now()),
        }
        with self._lock:
            self._files[record["id"]] = dict(record, lines=lines)
        return record

    # -- batches ---------------------------------------------------------

    def create_batch(self, req: CreateRequest, request_id: str) -> dict[str, Any]:
        """Create a batch from a validated request and return its object."""
        with self._lock:
            now = self.clock.now()
            n = next(self._created)
            rng = random.Random(f"{self.seed}:{n}") if self.seed is not None else random.Random()
            total = request_total(req, self._files, rng)
            model = str(req.model) if req.model else rng.choice(MODELS)
            plan = make_plan(req, rng, now, total, self.fault_rates)
            webhook = None
            if req.webhook_url or req.webhook_endpoint_id:
                webhook = Webhook(req.webhook_url, req.webhook_events, req.webhook_secret, req.webhook_endpoint_id)
            batch = Batch(
                id=new_id("batch"),
                plan=plan,
                base_url=self.public_url,
                request_id=request_id,
                native_id=new_id("batch_native"),
                provider=model.split("/", 1)[0] if "/" in model else "openai",
                model=model,
                endpoint=req.endpoint,
                completion_window=req.completion_window,
                total=total,
                input_file_id=req.input_file_id,
                session_id=req.session_id,
                metadata=req.metadata,
                webhook=webhook,
                billing=pending_billing(),
                created_ms=int(now * 1000),
                updated_ms=int(now * 1000),
            )
            for name in sorted(plan.faults):
                self.stats.incr("faults_assigned", name)
            self._batches[batch.id] = batch
            self._order.append(batch.id)
            self._remember(batch)
            self._schedule(batch, plan.run_at)
            events = self._emit(batch, "batch.created", "batch.created", now)
            snapshot = batch.to_dict()
        self._dispatch(events)
        return snapshot

    def retrieve(self, batch_id: str) -> dict[str, Any]:
        """Answer GET /v1/batches/{id}, applying the batch's retrieve faults."""
        with self._lock:
            self.stats.incr("retrieve_calls", "total")
            batch = self._get(batch_id)
            self.stats.incr("retrieve_calls", "by_batch", batch_id)
            batch.retrieves += 1
            nth, faults = batch.retrieves, batch.plan.faults
        if "retrieve_slow" in faults:
            self.stats.incr("faults_injected", "retrieve_slow")
            time.sleep(self.slow_seconds)
        fault = retrieve_fault(faults, nth)
        if fault:
            self.stats.incr("faults_injected", fault)
        if fault == "retrieve_429":
            raise ApiError(429, "rate limited (sandbox fault)", code="rate_limited",
                           type="rate_limit_error", headers={"Retry-After": "1"})
        if fault == "retrieve_500":
            raise ApiError(500, "internal error (sandbox fault)", code="sandbox_fault", type="api_error")
        self.tick()
        with self._lock:
            return batch.to_dict()

    def truth(self, batch_id: str) -> dict[str, Any]:
        """Return the batch as it really is, plus its plan, with no faults applied."""
        self.tick()
        with self._lock:
            return self._get(batch_id).truth()

    def list_batches(self, statuses: Iterable[str] = (), limit: int = 20, after: str | None = None) -> dict[str, Any]:
        """Return a page of batches, newest first, optionally filtered by status."""
        self.tick()
        wanted = set(statuses)
        with self._lock:
            ids = list(reversed(self._order))
            if after is not None:
                if after not in self._batches:
                    raise ApiError(400, f"unknown cursor {after}", code="invalid_cursor")
                ids = ids[ids.index(after) + 1 :]
            matching = (self._batches[i] for i in ids)
            if wanted:
                matching = (b for b in matching if b.status in wanted or lifecycle_of(b.status) in wanted)
            page = list(itertools.islice(matching, limit + 1))
            data = [b.to_dict() for b in page[:limit]]
        return {
            "object": "list",
            "data": data,
            "has_more": len(page) > limit,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    def cancel(self, batch_id: str) -> dict[str, Any]:
        """Ask to cancel a batch: cancelling now, cancelled a little later on the clock."""
        with self._lock:
            now = self.clock.now()
            # Apply what is already due first, so a cancel never rewinds a batch.
            events = self._run_due(now)
            try:
                batch = self._get(batch_id)
                if batch.terminal:
                    raise ApiError(409, f"batch {batch_id} is already {batch.status}", code="batch_not_cancellable")
                if batch.status != "cancelling":
                    batch.plan.end_at = min(batch.plan.end_at, now + CANCEL_SECONDS)
                    begin_cancel(batch, now)
                    self._remember(batch)
                    self._schedule(batch, batch.plan.end_at)
                return batch.to_dict()
            finally:
                self._dispatch(events)

    def batches_by_status(self) -> dict[str, int]:
        """Count batches by status."""
        counts: dict[str, int] = {}
        with self._lock:
            for batch in self._batches.values():
                counts[batch.status] = counts.get(batch.status, 0) + 1
        return counts

    # -- the clock -------------------------------------------------------

    def tick(self) -> None:
        """Apply every lifecycle step that is due on the sandbox clock."""
        with self._lock:
            events = self._run_due(self.clock.now())
        self._dispatch(events)

    def _run_due(self, now: float) -> list[Event]:
        """Pop and apply due heap entries; return the events they produced."""
        events: list[Event] = []
        while self._due and self._due[0][0] <= now:
            _, _, batch_id, generation = heapq.heappop(self._due)
            batch = self._batches[batch_id]
            if generation == batch.generation:
                events.extend(self._advance(batch, now))
        return events

    def _schedule(self, batch: Batch, due: float) -> None:
        """Wake ``batch`` at simulated time ``due``, superseding earlier wake-ups."""
        batch.generation += 1
        heapq.heappush(self._due, (due, next(self._seq), batch.id, batch.generation))

    def _dispatch(self, events: list[Event]) -> None:
        """Hand events to the deliverer, outside the state lock."""
        if events and self.on_events is not None:
            self.on_events(events)

    # -- lifecycle -------------------------------------------------------

    def _advance(self, batch: Batch, now: float) -> list[Event]:
        """Move ``batch`` to where its plan says it is at ``now``."""
        plan = batch.plan
        if batch.terminal:
            return []
        if batch.status == "pending":
            if now < plan.run_at:
                self._schedule(batch, plan.run_at)
                return []
            batch.status = "in_progress"
            batch.touch(now)
            self._remember(batch)
        if batch.status == "in_progress" and plan.cancel_at is not None and now >= plan.cancel_at:
            begin_cancel(batch, now)
            self._remember(batch)
        if now >= plan.end_at:
            return self._finish(batch, now)
        if batch.status != "in_progress":
            self._schedule(batch, plan.end_at)
            return []
        events = self._progress(batch, now)
        self._schedule(batch, next_step(batch, now))
        return events

    def _progress(self, batch: Batch, now: float) -> list[Event]:
        """Raise the request counts; emit progress when a new bucket is reached."""
        if not raise_counts(batch, now):
            return []
        self._remember(batch)
        done = batch.completed + batch.failed
        bucket = progress_bucket(done, batch.total)
        if 100 * done // batch.total < 10 or bucket <= batch.progress_bucket:
            return []
        batch.progress_bucket = bucket
        return self._emit(batch, "batch.progress", f"batch.progress:{bucket}", now)

    def _finish(self, batch: Batch, now: float) -> list[Event]:
        """End the batch and emit its terminal event (and the stale one, under out_of_order)."""
        outcome = finish(batch, now)
        batch.generation += 1
        events = self._emit(batch, f"batch.{outcome}", f"batch.{outcome}", now)
        if events and "out_of_order" in batch.plan.faults:
            events[0].followups.append(self._count_event(stale_progress(batch, now)))
        return events

    def _remember(self, batch: Batch) -> None:
        """Keep the latest non-terminal snapshot of each progress bucket."""
        bucket = progress_bucket(batch.completed + batch.failed, batch.total)
        batch.snapshots[bucket] = batch.to_dict()

    def _emit(self, batch: Batch, event_type: str, key: str, now: float) -> list[Event]:
        """Return the event for the batch's webhook (if subscribed), counted."""
        event = batch_event(batch, event_type, key, now)
        return [self._count_event(event)] if event else []

    def _count_event(self, event: Event) -> Event:
        """Count a generated event in the stats and return it."""
        self.stats.incr("events_generated", "total")
        self.stats.incr("events_generated", "by_type", event.type)
        return event

    # -- deliveries ------------------------------------------------------

    def record_attempt(
        self,
        event: Event,
        attempt: int,
        *,
        ok: bool,
        status: int | None,
        error: str | None,
        retry_at: float | None,
        was_retry: bool,
    ) -> None:
        """Fold one delivery attempt into the batch's webhook.delivery summary."""
        with self._lock:
            batch = self._batches.get(event.batch_id)
            if batch is None or batch.webhook is None:
                return
            now = self.clock.now()
            batch.webhook.record(
                event_id=event.id,
                event_type=event.type,
                attempt=attempt,
                was_retry=was_retry,
                ok=ok,
                status=status,
                error=error,
                at=iso(now),
                retry_at=iso(retry_at) if retry_at is not None else None,
            )
            # The summary is part of the visible object.
            batch.touch(now)

    def _get(self, batch_id: str) -> Batch:
        """Return the batch or raise a 404."""
        batch = self._batches.get(batch_id)
        if batch is None:
            raise ApiError(404, f"no batch {batch_id}", code="batch_not_found", type="not_found_error")
        return batch
