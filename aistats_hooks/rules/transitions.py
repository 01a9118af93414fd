"""What changed: the transitions a reconcile announces, from the last announced state to the new record.

Pure, no I/O. A record carries ``announced``, the state its transitions last
spoke for; ``transitions(record)`` compares the record with it and returns
the names to announce and the new ``announced``. Because the comparison is
against what was announced, not against the previous record, a duplicate, an
out-of-order or a replayed delivery (which leaves the record as it is, or
only moves it forward) can never announce a change twice, and a change first
seen through a provisional webhook payload is announced once retrieve
confirms it. Only retrieved (or CLI-tracked) state is announced: a payload
is a hint, and could be forged by anyone holding an old signed body.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from .billing import non_negative_int
from .status import BatchStatus, Source


class Transition(str, Enum):
    """The transitions a batch can go through, in the order one reconcile announces them."""

    CREATED = "batch.created"
    IN_PROGRESS = "batch.in_progress"
    PROGRESS = "batch.progress"
    COMPLETED = "batch.completed"
    FAILED = "batch.failed"
    CANCELLED = "batch.cancelled"
    EXPIRED = "batch.expired"
    BILLING_SETTLED = "batch.billing_settled"
    NOT_FOUND = "batch.not_found"


NAMES = frozenset(t.value for t in Transition)
_TERMINAL = {
    BatchStatus.COMPLETED: Transition.COMPLETED,
    BatchStatus.FAILED: Transition.FAILED,
    BatchStatus.CANCELLED: Transition.CANCELLED,
    BatchStatus.EXPIRED: Transition.EXPIRED,
}
_ANNOUNCING = frozenset({Source.RETRIEVE.value, Source.TRACKED.value})


def state_of(record: dict) -> dict[str, Any]:
    """Return the part of a record that transitions speak for."""
    counts = record.get("request_counts") or {}
    billing = record.get("billing") or {}
    settled = billing.get("state") == "settled"
    return {
        "status": record.get("status") or BatchStatus.PENDING.value,
        "done": non_negative_int(counts.get("completed")) + non_negative_int(counts.get("failed")),
        "settled_nanos": non_negative_int(billing.get("total_nanos")) if settled else None,
    }


def transitions(record: dict) -> tuple[list[Transition], dict[str, Any] | None]:
    """Return the transitions ``record`` announces, and its new ``announced`` state (None: unchanged)."""
    if record.get("source") not in _ANNOUNCING and record.get("status") != BatchStatus.NOT_FOUND.value:
        return [], None
    before = record.get("announced")
    now = state_of(record)
    status = BatchStatus(now["status"])
    out: list[Transition] = []
    if before is None:
        if status != BatchStatus.NOT_FOUND:
            out.append(Transition.CREATED)
        before = {"status": BatchStatus.PENDING.value, "done": 0, "settled_nanos": None}
    was = BatchStatus(before.get("status") or BatchStatus.PENDING.value)
    if status == BatchStatus.NOT_FOUND:
        if was != BatchStatus.NOT_FOUND:
            out.append(Transition.NOT_FOUND)
    elif not was.terminal:
        if status == BatchStatus.IN_PROGRESS and was.rank < BatchStatus.IN_PROGRESS.rank:
            out.append(Transition.IN_PROGRESS)
        if not status.terminal and now["done"] > non_negative_int(before.get("done")):
            out.append(Transition.PROGRESS)
        if status.terminal:
            out.append(_TERMINAL[status])
    if now["settled_nanos"] is not None and now["settled_nanos"] != before.get("settled_nanos"):
        out.append(Transition.BILLING_SETTLED)
    if not out and now == record.get("announced"):
        return [], None
    # A terminal batch keeps its announced terminal status (terminal is final).
    if was.terminal and status != BatchStatus.NOT_FOUND:
        now["status"] = was.value
    return out, now
