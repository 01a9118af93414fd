"""A batch's webhook configuration and its delivery summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_ATTEMPT_RECORDS = 20


def empty_delivery() -> dict[str, Any]:
    """Return a fresh webhook delivery summary."""
    return {
        "total_attempts": 0,
        "delivered_events": 0,
        "delivered_event_types": [],
        "pending_retries": 0,
        "next_retry_at": None,
        "last_attempt_at": None,
        "last_attempt_status": None,
        "last_response_status": None,
        "last_delivered_at": None,
        "last_failure_at": None,
        "last_error_message": None,
    }


@dataclass
class Webhook:
    """Where a batch's events go: a managed endpoint (or, under a legacy knob, an inline URL)."""

    url: str | None
    events: list[str]
    secret: str | None = None
    endpoint_id: str | None = None
    delivery: dict[str, Any] = field(default_factory=empty_delivery)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    delivered_ids: set[str] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        """Return the sanitized webhook object."""
        delivery = dict(self.delivery, delivered_event_types=list(self.delivery["delivered_event_types"]))
        return {
            "endpoint_id": self.endpoint_id,
            "url": self.url,
            "events": list(self.events),
            "has_secret": bool(self.secret or self.endpoint_id),
            "delivery": delivery,
            "attempts": [dict(a) for a in self.attempts],
        }

    def record(
        self,
        *,
        event_id: str,
        event_type: str,
        attempt: int,
        was_retry: bool,
        ok: bool,
        status: int | None,
        error: str | None,
        at: str,
        retry_at: str | None,
    ) -> None:
        """Fold one delivery attempt into the summary and the attempt log."""
        summary = self.delivery
        summary["total_attempts"] += 1
        summary["last_attempt_at"] = at
        summary["last_attempt_status"] = "succeeded" if ok else "failed"
        summary["last_response_status"] = status
        if was_retry:
            summary["pending_retries"] = max(0, summary["pending_retries"] - 1)
        if ok:
            summary["last_delivered_at"] = at
            if event_id not in self.delivered_ids:
                self.delivered_ids.add(event_id)
                summary["delivered_events"] += 1
            if event_type not in summary["delivered_event_types"]:
                summary["delivered_event_types"].append(event_type)
        else:
            summary["last_failure_at"] = at
            summary["last_error_message"] = error or f"HTTP {status}"
        if retry_at is not None:
            summary["pending_retries"] += 1
            summary["next_retry_at"] = retry_at
        elif not summary["pending_retries"]:
            summary["next_retry_at"] = None
        self.attempts.append({
            "event_id": event_id,
            "event_type": event_type,
            "attempt": attempt,
            "status": "succeeded" if ok else "failed",
            "response_status": status,
            "error": error,
            "at": at,
        })
        del self.attempts[:-MAX_ATTEMPT_RECORDS]
