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
  retrieve has no ``updated_at``); a provider's own shape (Anthropic's,
  Google's, Mistral's, xAI's) is read through ``provider_shapes.openai_view`` first;
- billing only becomes more final (none < pending < settled/void);
- applying the same snapshot twice changes nothing;
- a webhook payload is provisional: folding one marks the record
  ``source: webhook_payload`` (never final, so the sweep keeps retrieving it)
  and keeps the last confirmed state (retrieved or tracked) under
  ``confirmed``; the next retrieve folds into that confirmed state, not into
  the payload's, so it wins even over a payload's terminal status and billing;
- descriptive values nested deeper than ``MAX_DEPTH`` or holding more than
  ``MAX_NODES`` values are dropped (listed in ``dropped_fields``): they are
  shown, never reasoned about, and must not make a record unwritable.
"""

from __future__ import annotations

from .billing import billing_rank, is_settled_or_void, non_negative_int, normalize_billing
from .provider_shapes import openai_view
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
MAX_DEPTH = 32
MAX_NODES = 10_000
MAX_STRING = 65_536
# Where a provisional record keeps the confirmed state it was folded over.
CONFIRMED = "confirmed"
# Record keys a merge computes from a snapshot; every other key (last_event,
# reconcile_count, announced, tracked_at, ...) is bookkeeping kept across merges.
_STATE_KEYS = frozenset({
    "id", "status", "upstream_status", "lifecycle_status", "request_counts", "billing", "pricing_lines",
    "created_at", "updated_at", "finalized_at", "source", CONFIRMED, "dropped_fields", "not_found",
    "not_found_misses", *_DESCRIPTIVE,
})


def bounded(value: object) -> bool:
    """Tell whether a JSON value is small enough to store and show (iterative: no recursion)."""
    stack, nodes = [(value, 0)], 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if depth > MAX_DEPTH or nodes > MAX_NODES:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
            nodes += len(item)
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str) and len(item) > MAX_STRING:
            return False
        elif isinstance(item, float) and item != item or item in (float("inf"), float("-inf")):
            return False
    return True


def snapshot_time(obj: dict) -> float | None:
    """Return the newest moment a batch object speaks for."""
    stamps = [parse_time(obj.get(k)) for k in ("updated_at", *_TERMINAL_TIMES, *_PROGRESS_TIMES)]
    stamps = [s for s in stamps if s is not None]
    return max(stamps) if stamps else parse_time(obj.get("created_at"))


def normalize(obj: dict) -> dict:
    """Turn an upstream batch object (any shape, any provider's) into the fields of a record."""
    obj = openai_view(obj)
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
    if not bounded(record["pricing_lines"]):
        record["pricing_lines"] = []
    dropped = [key for key in _DESCRIPTIVE if record[key] is not None and not bounded(record[key])]
    for key in dropped:
        record[key] = None
    if dropped:
        record["dropped_fields"] = dropped
    return record


def merge(current: dict | None, obj: dict, *, source: Source = Source.RETRIEVE) -> dict:
    """Return the record that results from folding ``obj`` into ``current``."""
    source = Source(source)
    provisional = bool(current) and current.get("source") == Source.WEBHOOK_PAYLOAD.value
    if source == Source.WEBHOOK_PAYLOAD:
        # Keep the confirmed state under the payload's (the one kept already, if
        # this record is provisional); drop a nested copy so it never grows.
        base = current.get(CONFIRMED) if provisional else current
        record = _fold(current, obj, source)
        record["source"] = Source.WEBHOOK_PAYLOAD.value
        record[CONFIRMED] = {k: v for k, v in base.items() if k != CONFIRMED} if base else None
        return record
    if provisional:
        # The gateway speaks: fold it into the confirmed state, not the payload's,
        # and keep the bookkeeping of the record as it is now.
        record = _fold(current.get(CONFIRMED), obj, source)
        for key, value in current.items():
            if key not in _STATE_KEYS:
                record[key] = value
        return record
    return _fold(current, obj, source)


def _fold(current: dict | None, obj: dict, source: Source) -> dict:
    """Apply the merge rules (module docstring) to fold ``obj`` into ``current``."""
    incoming = normalize(obj)
    incoming["source"] = source.value
    if not current:
        return incoming
    # Shallow: nested values are replaced, never changed in place (request_counts is copied below).
    record = dict(current)
    record["request_counts"] = dict(current.get("request_counts") or {})
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

    counts = record["request_counts"]
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
    if incoming.get("dropped_fields"):
        record["dropped_fields"] = incoming["dropped_fields"]
    if source == Source.RETRIEVE:
        record["source"] = incoming["source"]
        record.pop("not_found", None)
        record.pop("not_found_misses", None)
    elif current.get("source") != Source.RETRIEVE.value and authoritative:
        record["source"] = incoming["source"]
    return record


def is_final(record: dict | None) -> bool:
    """Tell whether a record can never change again (no upstream call needed)."""
    if not record or record.get("source") != Source.RETRIEVE.value:
        return False
    return BatchStatus(record.get("status", "pending")).terminal and is_settled_or_void(record.get("billing"))

