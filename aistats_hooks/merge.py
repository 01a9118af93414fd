"""Pure merge rules: how a batch snapshot folds into the reconciled record.

No I/O here. ``merge`` takes the record we hold and a batch object (from
``retrieve_batch`` or, as a fallback, a webhook payload: the two shapes differ,
see docs/protocol.md) and returns the new record. The rules, each tested on
its own:

- a terminal status is final: it never changes again, and never to another
  terminal status;
- the status never moves back (pending < in_progress < terminal);
- request counts never go down;
- an older snapshot never overwrites a newer one (ordered by ``updated_at``
  when the object has one, else by the newest ``*_at`` moment it reports:
  retrieve has no ``updated_at``);
- billing only becomes more final (none < pending < settled/void);
- applying the same snapshot twice changes nothing.
"""

from __future__ import annotations

import copy
from .billing import billing_rank, is_settled_or_void, non_negative_int, normalize_billing
from .status import BatchStatus, Source, normalize_status
from .timestamps import iso, parse_time

_DESCRIPTIVE = (
    "endpoint", "model", "provider", "session_id", "app_id", "request_id", "metadata",
    "input_file_id", "output_file_id", "error_file_id", "completion_window", "upstream_error",
    "native_id", "usage", "results_url",
)
_TERMINAL_TIMES = ("completed_at", "failed_at", "expired_at", "cancelled_at")
# Moments a snapshot can speak for. Not `expires_at`: that is a deadline in the future.
_PROGRESS_TIMES = ("finalizing_at", "cancelling_at", "in_progress_at")


def snapshot_time(obj: dict) -> float | None:
    """Return the newest moment a batch object speaks for."""
    stamps = [parse_time(obj.get(k)) for k in ("updated_at", *_TERMINAL_TIMES, *_PROGRESS_TIMES)]
    stamps = [s for s in stamps if s is not None]
    return max(stamps) if stamps else parse_time(obj.get("created_at"))


def normalize(obj: dict) -> dict:
    """Turn an upstream batch object (either shape) into the fields of a record."""
    counts = obj.get("request_counts") if isinstance(obj.get("request_counts"), dict) else {}
    finalized = [parse_time(obj.get(k)) for k in _TERMINAL_TIMES]
    status = normalize_status(obj.get("status"), obj.get("lifecycle_status"))
    updated = snapshot_time(obj)
    record = {
        "id": str(obj.get("id")),
        "status": status.value,
        "upstream_status": obj.get("status"),
        "lifecycle_status": obj.get("lifecycle_status"),
        "request_counts": {k: non_negative_int(counts.get(k)) for k in ("total", "completed", "failed")},
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
        new_status.terminal or (new_status.rank > cur_status.rank and newer)
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
        counts[key] = max(non_negative_int(counts.get(key)), value)

    # The snapshot speaks for the record when it is newer, or when it is the
    # one that just made the batch terminal.
    authoritative = status_moves or (newer and (same_terminal or not cur_status.terminal))
    for key in _DESCRIPTIVE + ("created_at",):
        if incoming.get(key) is not None and (authoritative or record.get(key) is None):
            record[key] = incoming[key]
    new_rank, cur_rank = billing_rank(incoming["billing"]), billing_rank(record.get("billing"))
    if incoming["billing"] and (new_rank > cur_rank or (authoritative and new_rank == cur_rank)):
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
    return BatchStatus(record.get("status", "pending")).terminal and is_settled_or_void(record.get("billing"))

