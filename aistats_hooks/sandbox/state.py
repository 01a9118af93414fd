"""The fake gateway's state: files, endpoints and batches, answered like the gateway."""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .auth import default_management_key
from .batch import Batch
from .clock import SimClock
from .endpoints import Endpoints
from .engine import Engine
from .errors import ApiError, flat
from .notifications import Event
from .faults import parse_fault_rates, retrieve_fault
from .ids import batch_id, new_id
from .lifecycle import begin_cancel, make_plan, request_total
from .providers import native_id, provider_of
from .results import ResultsLimiter
from .providers import view
from .shapes import list_item, retrieve_object, truth
from .stats import Stats
from .validation import CreateRequest, file_rows
from .webhook import Webhook

# A batch that names no model (a sandbox convenience: the gateway needs one) gets an OpenAI one, answered
# in OpenAI's shape; a named Anthropic, Google, Mistral or xAI model gets its provider's shape (providers.py).
MODELS = ("openai/gpt-5-mini", "openai/gpt-5-nano")
# Simulated seconds from a cancel request to the cancelled status.
CANCEL_SECONDS = 10.0
# The gateway polls the provider every 5 minutes, every 2 while finalizing or cancelling.
POLL_SECONDS = 300.0
FAST_POLL_SECONDS = 120.0
WORKSPACE_ID = "ws_sandbox"
# A list filter name's statuses, as the gateway expands them (routes/v1/data/batches.ts
# parseBatchListStatuses). "validating" is not a name; unknown names are dropped, and a filter of
# unknown names only lists everything.
STATUS_GROUPS = {
    "queued": ("pending", "queued", "validating"), "pending": ("pending", "queued", "validating"),
    "running": ("in_progress", "finalizing", "cancelling"), "in_progress": ("in_progress", "finalizing", "cancelling"),
    "processing": ("in_progress", "finalizing", "cancelling"),
    "cancelled": ("cancelled", "canceled"), "canceled": ("cancelled", "canceled"),
    "completed": ("completed",), "failed": ("failed",), "expired": ("expired",),
}


def clamp_limit(raw: str | None) -> int:
    """The gateway's list limit (parseBatchListLimit): Number(raw ?? ""), clamped to 1..100; NaN gives 20.

    No ``limit`` reads as Number("") = 0, so one item.
    """
    text = (raw or "").strip()
    try:
        value = float(text) if text else 0.0
    except ValueError:
        value = float("nan")
    return 20 if value != value or value in (float("inf"), float("-inf")) else max(1, min(100, int(value)))


class Gateway(Engine):
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
        poll_seconds: float = POLL_SECONDS,
        fast_poll_seconds: float = FAST_POLL_SECONDS,
        batches_enabled: bool = True,
        insufficient_funds: bool = False,
        results_unavailable: bool = False,
        allow_inline_webhooks: bool = False,
        accept_unknown_files: bool = False,
        management_key: str | None = None,
        results_route: bool = False,
    ) -> None:
        self.api_key = api_key
        # The control routes' key (auth.py); derived from api_key unless given.
        self.management_key = management_key or default_management_key(api_key)
        # Knobs for tests: the time legacy keys are judged at (None: now), and the next N gateway calls'
        # forced 401 reason (db_error, server_misconfig_missing_pepper: transient at the gateway).
        self.legacy_now: float | None = None
        self._auth_fault: tuple[str, int] | None = None
        # GET /v1/batches/{id}/results is not in the gateway's source; served only when asked for.
        self.results_route = results_route
        self.clock = clock or SimClock(speed)
        self.seed = seed
        self.fault_rates = parse_fault_rates(faults)
        self.slow_seconds = slow_seconds
        self.public_url = public_url.rstrip("/")
        self.poll_seconds, self.fast_poll_seconds = poll_seconds, fast_poll_seconds
        # Knobs for tests: refusals the real gateway gives some workspaces.
        self.batches_enabled = batches_enabled
        self.insufficient_funds = insufficient_funds
        self.results_unavailable = results_unavailable
        self.allow_inline_webhooks = allow_inline_webhooks
        self.accept_unknown_files = accept_unknown_files
        self.workspace_id = WORKSPACE_ID
        self.stats = Stats()
        self.endpoints = Endpoints(WORKSPACE_ID, self.clock)
        self.results_limiter = ResultsLimiter()
        # Set by the server to hand new events to the deliverer.
        self.on_events: Callable[[list[Event]], None] | None = None
        self._lock = threading.RLock()
        self._batches: dict[str, Batch] = {}
        self._files: dict[str, dict[str, Any]] = {}
        self._due: list[tuple[float, int, str, int]] = []
        self._seq = itertools.count()
        self._created = itertools.count()

    def set_auth_fault(self, reason: str | None, count: int = 1) -> None:
        """Refuse the next ``count`` gateway calls with 401 ``reason`` (None clears)."""
        with self._lock:
            self._auth_fault = (reason, count) if reason and count > 0 else None

    def take_auth_fault(self) -> str | None:
        """Return the forced 401 reason for this call, counting it, or None."""
        with self._lock:
            if self._auth_fault is None:
                return None
            reason, left = self._auth_fault
            self._auth_fault = (reason, left - 1) if left > 1 else None
            return reason

    # -- files -----------------------------------------------------------

    def upload_file(self, filename: str, purpose: str, content: bytes) -> dict[str, Any]:
        """Store an uploaded file and its JSONL request rows."""
        record = {"id": new_id("file"), "object": "file", "purpose": purpose, "filename": filename,
                  "bytes": len(content), "created_at": int(self.clock.now()), "status": "processed"}
        with self._lock:
            self._files[record["id"]] = dict(record, rows=file_rows(content), content=content)
        return record

    def file_content(self, file_id: str) -> bytes:
        """Return a file's bytes (uploaded, or written when a batch ended)."""
        with self._lock:
            known = self._files.get(file_id)
        if known is None:
            raise flat("not_found", "file_not_found_or_not_owned", file_id=file_id)
        return known["content"]

    def files_view(self) -> Mapping[str, dict[str, Any]]:
        """The uploaded files, for validation."""
        return self._files

    # -- batches ---------------------------------------------------------

    def create_batch(self, req: CreateRequest, request_id: str) -> dict[str, Any]:
        """Create a batch from a validated request and return retrieve's object."""
        with self._lock:
            now = self.clock.now()
            n = next(self._created)
            rng = random.Random(f"{self.seed}:{n}") if self.seed is not None else random.Random()
            total = request_total(req, rng)
            model = str(req.model) if req.model else rng.choice(MODELS)
            plan = make_plan(req, rng, now, total, self.fault_rates)
            batch = Batch(
                id=batch_id(time.time()), plan=plan, base_url=self.public_url, request_id=request_id,
                native_id=native_id(provider_of(model)), provider=provider_of(model), model=model,
                endpoint=req.endpoint,
                completion_window=req.completion_window, total=total, input_file_id=req.input_file_id,
                session_id=req.session_id, metadata=req.metadata, webhook=self._webhook(req), rows=req.rows,
                created_ms=int(now * 1000), updated_ms=int(now * 1000), real_created=time.time(),
            )
            batch.status_at["validating"] = now
            for name in sorted(plan.faults):
                self.stats.incr("faults_assigned", name)
            self._batches[batch.id] = batch
            self._schedule(batch, plan.run_at)
            events = self._emit(batch, "batch.created", now)
            if events and "out_of_order" in plan.faults:
                # Held back: it will arrive after the terminal event, stale.
                batch.held_created = events.pop()
                batch.held_created.stale = True
            snapshot = retrieve_object(batch)
        self._dispatch(events)
        return snapshot

    def _webhook(self, req: CreateRequest) -> Webhook | None:
        """The batch's webhook: its endpoint (events from the batch, else the endpoint's)."""
        if req.webhook_endpoint_id:
            endpoint = self.endpoints.active(req.webhook_endpoint_id)
            events = req.webhook_events or (endpoint.events if endpoint else None) or ["batch.completed"]
            return Webhook(endpoint.url if endpoint else None, list(events), None, req.webhook_endpoint_id)
        if req.webhook_url:
            events = req.webhook_events or ["batch.completed", "batch.failed", "batch.cancelled"]
            return Webhook(req.webhook_url, list(events), req.webhook_secret)
        return None

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
        # The gateway passes the provider's errors through with its status and body (handleRetrieve's
        # toJsonResponse(upstream)): OpenAI's shapes here.
        if fault == "retrieve_429":
            raise ApiError(429, {"error": {"message": "Rate limit reached for batch requests.", "type": "requests",
                                           "param": None, "code": "rate_limit_exceeded"}}, {"Retry-After": "1"})
        if fault == "retrieve_500":
            raise ApiError(500, {"error": {"message": "The server had an error while processing your request.",
                                           "type": "server_error", "param": None, "code": None}})
        self.tick()
        with self._lock:
            answer = retrieve_object(batch)
            # A successful retrieve saves the gateway's record: updated_at, the list's order, moves; and a
            # finalisation ran, so every later one answers already_billed.
            batch.touch(self.clock.now())
            if batch.billing.final:
                batch.billing.reported = True
            return answer

    def truth(self, batch_id: str) -> dict[str, Any]:
        """Return the batch as it really is, plus its plan, with no faults applied."""
        self.tick()
        with self._lock:
            return truth(self._get(batch_id))

    def batch(self, batch_id: str) -> Batch:
        """Return the live batch record (after applying what is due), or raise the 404."""
        self.tick()
        return self._get(batch_id)

    def list_batches(self, statuses: Iterable[str] = (), limit: int = 20) -> dict[str, Any]:
        """Return up to ``limit`` batches by the record's update time, newest first; has_more is always false."""
        self.tick()
        self.stats.incr("list_calls")
        wanted = {s for name in statuses for s in STATUS_GROUPS.get(name.strip().lower(), ())}
        with self._lock:
            now = self.clock.now()
            rows = (b for b in self._batches.values() if not wanted or view(b)["status"] in wanted)
            # nlargest, not a sort: the polling bench lists 100 of 100,000 batches many times a minute.
            top = heapq.nlargest(limit, ((self.seen_ms(b, now), b.created_ms, b) for b in rows),
                                 key=lambda row: row[:2])
            data = [list_item(b, seen) for seen, _, b in top]
        return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": False}

    def cancel(self, batch_id: str) -> dict[str, Any]:
        """Ask to cancel a batch: cancelling now, cancelled a little later on the clock."""
        with self._lock:
            now = self.clock.now()
            # Apply what is already due first, so a cancel never rewinds a batch.
            events = self._run_due(now)
            try:
                batch = self._get(batch_id)
                if batch.terminal or batch.status == "finalizing":
                    # The gateway has no state check of its own (routes/v1/data/batches.ts handleCancel): the
                    # provider's refusal passes through with its status and body (OpenAI's shape here).
                    raise ApiError(409, {"error": {
                        "message": f"Cannot cancel a batch with status '{batch.status}'.",
                        "type": "invalid_request_error", "param": None, "code": None}})
                if batch.status != "cancelling":
                    batch.plan.end_at = min(batch.plan.end_at, now + CANCEL_SECONDS)
                    batch.plan.finalize_at = None
                    begin_cancel(batch, now)
                    self._schedule(batch, batch.plan.end_at)
                return retrieve_object(batch)
            finally:
                self._dispatch(events)

    def batches_by_status(self) -> dict[str, int]:
        """Count batches by status."""
        counts: dict[str, int] = {}
        with self._lock:
            for batch in self._batches.values():
                counts[batch.status] = counts.get(batch.status, 0) + 1
        return counts

    def _get(self, batch_id: str) -> Batch:
        """Return the batch or raise the gateway's 404."""
        batch = self._batches.get(batch_id)
        if batch is None:
            raise flat("not_found", "batch_not_found_or_not_owned", batch_id=batch_id)
        return batch
