"""Pure merge rules: how a batch snapshot folds into the reconciled record.

No I/O here. ``merge`` takes the record we hold and a batch object (from
``retrieve_batch`` or, as a fallback, a webhook payload) and returns the new
record. The rules, each tested on its own:

- a terminal status is final: it never changes again, and never to another
  terminal status;
- the status never moves back (pending < in_progress < terminal);
- request counts never go down;
- an older snapshot never overwrites a newer one;
- applying the same snapshot twice changes nothing.
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from enum import Enum
from typing import Any


class BatchStatus(str, Enum):
    """The statuses a reconciled batch can have."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    NOT_FOUND = "not_found"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


class Source(str, Enum):
    """Where the state of a record came from."""

    RETRIEVE = "retrieve"
    WEBHOOK_PAYLOAD = "webhook_payload"
    TRACKED = "tracked"


TERMINAL = frozenset({BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.CANCELLED, BatchStatus.EXPIRED})
FINAL_BILLING = frozenset({"settled", "void"})
_RANK = {BatchStatus.NOT_FOUND: -1, BatchStatus.PENDING: 0, BatchStatus.IN_PROGRESS: 1}

# Provider-style and gateway lifecycle values, folded onto our statuses. Unlike
# the gateway's public mapping we keep `expired` apart from `failed`: both are
# terminal, but users ask which one happened.
_STATUS_MAP = {
    "completed": BatchStatus.COMPLETED,
    "succeeded": BatchStatus.COMPLETED,
    "failed": BatchStatus.FAILED,
    "expired": BatchStatus.EXPIRED,
    "cancelled": BatchStatus.CANCELLED,
    "canceled": BatchStatus.CANCELLED,
    "in_progress": BatchStatus.IN_PROGRESS,
    "processing": BatchStatus.IN_PROGRESS,
    "running": BatchStatus.IN_PROGRESS,
    "finalizing": BatchStatus.IN_PROGRESS,
    "cancelling": BatchStatus.IN_PROGRESS,
}

_DESCRIPTIVE = (
    "endpoint", "model", "provider", "session_id", "app_id", "request_id", "metadata",
    "input_file_id", "output_file_id", "error_file_id", "completion_window", "upstream_error",
    "native_id",
)
_TERMINAL_TIMES = ("completed_at", "failed_at", "expired_at", "cancelled_at")


def normalize_status(raw: Any, lifecycle: Any = None) -> BatchStatus:
    """Map an upstream status (or lifecycle status) onto a ``BatchStatus``."""
    for value in (raw, lifecycle):
        if isinstance(value, str) and value.strip():
            return _STATUS_MAP.get(value.strip().lower(), BatchStatus.PENDING)
    return BatchStatus.PENDING


def parse_time(value: Any) -> float | None:
    """Return unix seconds from an ISO-8601 string or unix seconds/milliseconds."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.isascii() and text.replace(".", "", 1).isdigit():
            seconds = float(text)
        else:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            return parsed.timestamp()
    else:
        return None
    return seconds / 1000.0 if seconds >= 1e12 else seconds


def iso(seconds: float | None) -> str | None:
    """Format unix seconds as ISO-8601 UTC with milliseconds."""
    if seconds is None:
        return None
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, float) and value >= 0:
        return int(value)
    return 0


def snapshot_time(obj: dict) -> float | None:
    """Return the newest moment a batch object speaks for."""
    stamps = [parse_time(obj.get(k)) for k in ("updated_at", *_TERMINAL_TIMES, "finalizing_at", "in_progress_at")]
    stamps = [s for s in stamps if s is not None]
    return max(stamps) if stamps else parse_time(obj.get("created_at"))


def normalize_billing(raw: Any) -> dict | None:
    """Keep the billing fields we reason about, money as integer nanos."""
    if not isinstance(raw, dict):
        return None
    billing = {k: raw.get(k) for k in ("currency", "state", "billable", "charge_reason", "charged", "billed_at")}
    billing["state"] = str(billing["state"]).lower() if billing["state"] else "pending"
    billing["total_nanos"] = _int(raw.get("total_nanos"))
    for key in ("settled_provider_cost", "settled_user_cost"):
        if raw.get(key) is not None:
            billing[key] = str(raw[key])
    return billing


def normalize(obj: dict) -> dict:
    """Turn an upstream batch object into the fields of a record."""
    counts = obj.get("request_counts") if isinstance(obj.get("request_counts"), dict) else {}
    finalized = [parse_time(obj.get(k)) for k in _TERMINAL_TIMES]
    status = normalize_status(obj.get("status"), obj.get("lifecycle_status"))
    updated = snapshot_time(obj)
    record = {
        "id": str(obj.get("id")),
        "status": status.value,
        "upstream_status": obj.get("status"),
        "lifecycle_status": obj.get("lifecycle_status"),
        "request_counts": {k: _int(counts.get(k)) for k in ("total", "completed", "failed")},
        "billing": normalize_billing(obj.get("billing")),
        "pricing_lines": obj.get("pricing_lines") if isinstance(obj.get("pricing_lines"), list) else [],
        "created_at": iso(parse_time(obj.get("created_at"))),
        "updated_at": iso(updated),
        "finalized_at": iso(max([f for f in finalized if f is not None], default=None))
        or (iso(updated) if status.terminal else None),
    }
    for key in _DESCRIPTIVE:
        record[key] = obj.get(key)
    record["native_id"] = obj.get("native_id") or obj.get("native_batch_id")
    return record


def _rank(status: str) -> int:
    return _RANK.get(BatchStatus(status), 2)


def _billing_rank(billing: dict | None) -> int:
    if not billing:
        return 0
    return 2 if billing.get("state") in FINAL_BILLING else 1


def merge(current: dict | None, obj: dict, *, source: Source = Source.RETRIEVE) -> dict:
    """Return the record that results from folding ``obj`` into ``current``."""
    incoming = normalize(obj)
    incoming["source"] = Source(source).value
    if not current:
        return incoming
    record = copy.deepcopy(current)
    cur_status = BatchStatus(current.get("status", "pending"))
    new_status = BatchStatus(incoming["status"])
    cur_time = parse_time(current.get("updated_at")) or 0.0
    new_time = parse_time(incoming["updated_at"]) or 0.0
    newer = new_time >= cur_time

    # Status: terminal is final; otherwise only forward, and a stale snapshot
    # may still carry a terminal status forward (out of order: terminal wins).
    status_moves = not cur_status.terminal and (
        new_status.terminal or (_rank(new_status.value) > _rank(cur_status.value) and newer)
    )
    same_terminal = cur_status.terminal and new_status == cur_status
    if status_moves:
        for key in ("status", "upstream_status", "lifecycle_status", "finalized_at"):
            record[key] = incoming[key]
    elif newer and not cur_status.terminal and new_status == cur_status:
        record["upstream_status"] = incoming["upstream_status"]
        record["lifecycle_status"] = incoming["lifecycle_status"]

    counts = record.setdefault("request_counts", {})
    for key, value in incoming["request_counts"].items():
        counts[key] = max(_int(counts.get(key)), value)

    # The snapshot speaks for the record when it is newer, or when it is the
    # one that just made the batch terminal.
    authoritative = status_moves or (newer and (same_terminal or not cur_status.terminal))
    for key in _DESCRIPTIVE + ("created_at",):
        if incoming.get(key) is not None and (authoritative or record.get(key) is None):
            record[key] = incoming[key]
    if incoming["billing"] and (
        _billing_rank(incoming["billing"]) > _billing_rank(record.get("billing"))
        or (authoritative and _billing_rank(incoming["billing"]) == _billing_rank(record.get("billing")))
    ):
        record["billing"] = incoming["billing"]
        if incoming["pricing_lines"] or not record.get("pricing_lines"):
            record["pricing_lines"] = incoming["pricing_lines"]
    if new_time > cur_time:
        record["updated_at"] = incoming["updated_at"]
    # Retrieve is the truth: once a record holds retrieved state, a payload
    # fallback does not relabel it.
    if source == Source.RETRIEVE or current.get("source") != Source.RETRIEVE.value:
        if authoritative or source == Source.RETRIEVE:
            record["source"] = incoming["source"]
    return record


def is_final(record: dict | None) -> bool:
    """Tell whether a record can never change again (no upstream call needed)."""
    if not record or record.get("source") != Source.RETRIEVE.value:
        return False
    billing = record.get("billing") or {}
    return BatchStatus(record.get("status", "pending")).terminal and billing.get("state") in FINAL_BILLING


def billing_day(record: dict) -> str:
    """Return the UTC day (YYYY-MM-DD) a batch's cost belongs to."""
    billing = record.get("billing") or {}
    for value in (billing.get("billed_at"), record.get("finalized_at"), record.get("updated_at")):
        seconds = parse_time(value)
        if seconds is not None:
            return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d")
    return "unknown"


def contribution(record: dict) -> tuple[int, dict[str, str]]:
    """Return what a record adds to the billing ledger: nanos and their attribution."""
    billing = record.get("billing") or {}
    nanos = _int(billing.get("total_nanos")) if billing.get("state") == "settled" else 0
    groups = {
        "day": billing_day(record),
        "session_id": str(record.get("session_id") or "(none)"),
        "model": str(record.get("model") or "(unknown)"),
        "provider": str(record.get("provider") or "(unknown)"),
    }
    return nanos, groups


def nanos_to_usd(nanos: int) -> str:
    """Format integer nanos as an exact decimal USD string with 9 places."""
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(int(nanos)), 1_000_000_000)
    return f"{sign}{whole}.{frac:09d}"
