"""The gateway's clock-driven side: batches advance on a heap of wake-ups and emit events.

``Gateway`` (state.py) mixes this in; everything here runs under its lock.
"""

from __future__ import annotations

import heapq
from typing import Any

from .batch import Batch, iso
from .charges import block, finalize
from .faults import BILLING_RETRY_SECONDS
from .lifecycle import begin_cancel, begin_finalizing, finish, next_step, raise_counts
from .notifications import TERMINAL_EVENT, Event, subscribed
from .providers import view
from .results import write_outputs
from .shapes import webhook_data


class Engine:
    """Lifecycle steps, events and delivery bookkeeping of the sandbox gateway."""

    # Set by Gateway.__init__.
    _lock: Any
    _batches: dict[str, Batch]
    _due: list[tuple[float, int, str, int]]

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

    def _advance(self, batch: Batch, now: float) -> list[Event]:
        """Move ``batch`` to where its plan says it is at ``now``."""
        plan = batch.plan
        if batch.terminal:
            if batch.billing.state == "blocked" and plan.unblock_at is not None and now >= plan.unblock_at:
                # The retried finalisation bills; the status does not change, so no webhook follows.
                finalize(batch, now)
                batch.touch(now)
            return []
        if batch.status == "validating":
            if now < plan.run_at:
                self._schedule(batch, plan.run_at)
                return []
            batch.move("in_progress", now)
        if batch.status == "in_progress" and plan.cancel_at is not None and now >= plan.cancel_at:
            begin_cancel(batch, now)
        if batch.status == "in_progress" and plan.finalize_at is not None and now >= plan.finalize_at:
            # Even when the clock skipped past it, a completing batch passes through finalizing.
            begin_finalizing(batch, min(now, plan.end_at))
        if now >= plan.end_at:
            return self._finish(batch, now)
        if batch.status != "in_progress":
            self._schedule(batch, plan.end_at)
            return []
        raise_counts(batch, now)
        due = next_step(batch, now)
        self._schedule(batch, min(due, plan.finalize_at) if plan.finalize_at and plan.finalize_at > now else due)
        return []

    def _finish(self, batch: Batch, now: float) -> list[Event]:
        """End the batch, write its files, bill it and emit its terminal event (after the held-back one)."""
        outcome = finish(batch, now)
        batch.generation += 1
        write_outputs(batch, self._files, now)
        interval = self.fast_poll_seconds if batch.polled_fast else self.poll_seconds
        # The gateway notices the end at its next poll of the provider.
        delay = interval - ((now - batch.plan.created) % interval) if interval > 0 else 0.0
        held = getattr(batch, "held_created", None)
        if "lost_terminal" in batch.plan.faults:
            # That pass cannot bill: no terminal webhook, then or ever; billing is retried later.
            block(batch, now)
            batch.plan.unblock_at = now + delay + BILLING_RETRY_SECONDS
            self._schedule(batch, batch.plan.unblock_at)
            self.stats.incr("faults_injected", "lost_terminal")
            if held is None:
                return []
            held.delay = delay
            return [held]
        finalize(batch, now)
        # The event follows the gateway's status: an Anthropic batch ended with successes is completed.
        status = view(batch)["status"]
        events = self._emit(batch, TERMINAL_EVENT.get(status, TERMINAL_EVENT[outcome]), now, delay=delay)
        if events and held is not None:
            events[0].followups.append(held)
        return events

    def _emit(self, batch: Batch, event_type: str, now: float, *, delay: float = 0.0,
              force: bool = False) -> list[Event]:
        """Return the event for the batch's webhook (if subscribed), counted."""
        hook = batch.webhook
        if hook is None or not (force or subscribed(hook.events, event_type)):
            return []
        event = Event(batch.id, event_type, event_type, int(batch.stamp(now)), webhook_data(batch), hook.endpoint_id,
                      hook.url, hook.secret, batch.plan.faults, delay=delay)
        self.stats.incr("events_generated", "total")
        self.stats.incr("events_generated", "by_type", event_type)
        return [event]

    def pass_interval(self, status: str) -> float:
        """How often the gateway's reconciler passes over an open batch (nextBatchReconcileAt)."""
        if status in ("finalizing", "cancelling"):
            return self.fast_poll_seconds
        return self.poll_seconds if status == "in_progress" else 2 * self.poll_seconds

    def seen_ms(self, batch: Batch, now: float) -> int:
        """The record's updated_at (the list's order): its own moves, or the gateway's last pass while open."""
        interval = self.pass_interval(batch.status)
        if batch.terminal or interval <= 0:
            return batch.updated_ms
        passed = batch.plan.created + ((now - batch.plan.created) // interval) * interval
        return max(batch.updated_ms, int(passed * 1000))

    def refresh(self, event: Event) -> None:
        """Rebuild a retry's ``created_at`` and ``data`` from the batch as it is now, as the gateway builds
        every attempt's envelope afresh (core/async-notifications.ts)."""
        with self._lock:
            batch = self._batches.get(event.batch_id)
            if batch is not None:
                event.created_at = int(batch.stamp(self.clock.now()))
                event.data = webhook_data(batch)

    def record_attempt(self, event: Event, attempt: int, *, ok: bool, status: int | None, error: str | None,
                       retry_at: float | None, was_retry: bool) -> None:
        """Fold one delivery attempt into the batch's webhook.delivery summary."""
        with self._lock:
            batch = self._batches.get(event.batch_id)
            if batch is None or batch.webhook is None:
                return
            now = self.clock.now()
            batch.webhook.record(event_id=event.id, event_type=event.type, attempt=attempt, was_retry=was_retry,
                                 ok=ok, status=status, error=error, at=iso(batch.stamp(now)),
                                 retry_at=iso(batch.stamp(retry_at)) if retry_at is not None else None)
