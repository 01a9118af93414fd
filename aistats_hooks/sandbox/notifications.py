"""Webhook events: what is sent for a batch, event ids and the delivery envelope.

Like the gateway, only ``batch.created`` (when subscribed) and the terminal
events are sent; an expired batch arrives as ``batch.failed``; there are no
progress deliveries.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

MAX_ATTEMPTS = 4
MAX_EVENT_ID = 160
TERMINAL_EVENTS = frozenset({"batch.completed", "batch.failed", "batch.cancelled"})
# The batch event announcing each final status (expired is delivered as failed).
TERMINAL_EVENT = {"completed": "batch.completed", "failed": "batch.failed", "expired": "batch.failed",
                  "cancelled": "batch.cancelled"}

_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9_-]+")


def event_id(batch_id: str, delivery_key: str) -> str:
    """Return the gateway's event id: runs of other characters become one ``_``, at most 160 characters."""
    return _UNSAFE_RUN.sub("_", "_".join(("evt", "batch", batch_id, delivery_key)))[:MAX_EVENT_ID]


def subscribed(events: list[str], event_type: str) -> bool:
    """Say whether ``events`` (batch.* or job.* names) include ``event_type``."""
    kind = event_type.split(".", 1)[1]
    # No alias: an expired batch is announced as batch.failed, so a batch.expired subscription gets nothing.
    return bool({event_type, f"job.{kind}"} & set(events))


@dataclass
class Event:
    """One event of one batch, with everything needed to deliver it."""

    batch_id: str
    type: str
    key: str
    created_at: int
    data: dict[str, Any]
    # The managed endpoint the event goes to; url/secret are resolved at send time.
    endpoint_id: str | None = None
    # Only for the legacy inline-webhook knob: a fixed URL and secret.
    url: str | None = None
    secret: str | None = None
    faults: frozenset[str] = frozenset()
    # Events to deliver only after this one's first attempt (out_of_order).
    followups: list[Event] = field(default_factory=list)
    stale: bool = False
    # Simulated seconds before the first attempt (the gateway's provider polling).
    delay: float = 0.0

    @property
    def id(self) -> str:
        """Return the event id, the receiver's deduplication key."""
        return event_id(self.batch_id, self.key)

    @property
    def terminal(self) -> bool:
        """Say whether this event announces the batch's end."""
        return self.type in TERMINAL_EVENTS and not self.stale

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
