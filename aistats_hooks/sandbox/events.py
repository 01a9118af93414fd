"""Webhook events: subscriptions, event ids and the delivery envelope."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .batch import Batch

MAX_ATTEMPTS = 4
EVENT_KINDS = ("created", "progress", "completed", "failed", "cancelled", "expired")
KNOWN_EVENTS = frozenset(f"{family}.{kind}" for family in ("batch", "job") for kind in EVENT_KINDS)
DEFAULT_EVENTS = ("job.completed", "job.failed", "job.cancelled", "job.expired")
TERMINAL_EVENTS = frozenset({"batch.completed", "batch.failed", "batch.cancelled", "batch.expired"})

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def event_id(batch_id: str, delivery_key: str) -> str:
    """Return the stable event id of a batch's delivery key."""
    return f"evt_batch_{batch_id}_{_UNSAFE.sub('_', delivery_key)}"


def subscribed(events: list[str], event_type: str) -> bool:
    """Say whether ``events`` (batch.* or job.* names) include ``event_type``."""
    kind = event_type.split(".", 1)[1]
    return event_type in events or f"job.{kind}" in events


def progress_bucket(done: int, total: int) -> int:
    """Return the progress bucket: the percentage floored to 10s, clamped to 10..90."""
    percent = 100 * done // total if total else 0
    return min(90, max(10, percent // 10 * 10))


@dataclass
class Event:
    """One event of one batch, with everything needed to deliver it."""

    batch_id: str
    type: str
    key: str
    created_at: int
    data: dict[str, Any]
    url: str
    secret: str | None
    faults: frozenset[str] = frozenset()
    # Events to deliver only after this one's first attempt (out_of_order).
    followups: list[Event] = field(default_factory=list)
    stale: bool = False

    @property
    def id(self) -> str:
        """Return the event id, the receiver's deduplication key."""
        return event_id(self.batch_id, self.key)

    @property
    def terminal(self) -> bool:
        """Say whether this event announces the batch's end."""
        return self.type in TERMINAL_EVENTS

    def body(self, attempt: int) -> bytes:
        """Serialize the envelope for ``attempt``."""
        envelope = {
            "id": self.id,
            "type": self.type,
            "created_at": self.created_at,
            "delivery": {"key": self.key, "attempt": attempt, "max_attempts": MAX_ATTEMPTS},
            "data": self.data,
        }
        return json.dumps(envelope, separators=(",", ":")).encode("utf-8")


def batch_event(batch: Batch, event_type: str, key: str, now: float) -> Event | None:
    """Return the event for the batch's webhook now, or None when it does not subscribe."""
    hook = batch.webhook
    if hook is None or not hook.url or not subscribed(hook.events, event_type):
        return None
    if event_type == "batch.progress":
        batch.progress_sent.add(int(key.rsplit(":", 1)[1]))
    return Event(batch.id, event_type, key, int(now), batch.to_dict(), hook.url, hook.secret, batch.plan.faults)


def stale_progress(batch: Batch, now: float) -> Event:
    """Build the out_of_order fault's progress event: an older snapshot, sent after the end."""
    # Prefer a bucket never sent, so the stale event's id is new to the receiver.
    unsent = [b for b in batch.snapshots if b not in batch.progress_sent]
    bucket = max(unsent or batch.snapshots)
    hook = batch.webhook
    return Event(batch.id, "batch.progress", f"batch.progress:{bucket}", int(now), batch.snapshots[bucket],
                 hook.url, hook.secret, batch.plan.faults, stale=True)
