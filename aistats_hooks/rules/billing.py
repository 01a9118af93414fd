"""Money: how a batch's billing reads, what it adds to the ledger, and how nanos print.

The gateway describes billing in two shapes, and we read both with one rule.

- **Webhook payload** (and the SDK's ``BatchBillingSummary``): ``state`` is
  ``pending``, ``estimated``, ``settled`` or ``void``; the amount is
  ``total_nanos`` (null until settled), else ``cost_nanos``.
- **Retrieve**: ``billing`` is omitted until the gateway finalises the batch,
  then ``{billed, charged, reason, cost_nanos, cost_usd, finalized_at, ...}``
  with no ``state``. ``billed: true`` means finalised: **settled** for
  ``cost_nanos`` when that is above 0 or the batch was charged, otherwise
  **void** (a released reservation: failed, cancelled, expired, or nothing to
  pay). ``billed: false`` (e.g. a settlement the gateway will retry) or no
  ``billing`` at all is **pending**. Every finalisation after the first
  answers ``charged: false, reason: "already_billed"`` with the stored
  ``cost_nanos``: the amount, not ``charged``, makes it settled. Cancelled,
  expired and failed batches are charged for their completed requests
  (``charged_partial_success``): the same rule, whatever the status.

Only ``settled`` contributes to the ledger, its amount in integer nanos
(1e-9 USD); ``settled`` and ``void`` are final. No I/O here.

Amounts are bounded: a billed amount must be a whole number of nanos from 0
to ``MAX_NANOS`` (10^15 nanos, one million USD per batch). Anything else
(a fraction, a negative, a number too large for the ledger's 64-bit
counters, text that is not digits) raises ``InvalidAmount`` instead of
being guessed at: the reconcile records the error on the batch and keeps
its previous state.
"""

from __future__ import annotations

import math
from typing import Any

from .timestamps import parse_time, utc_day

# The largest amount one batch may bill, in nanos (1e15 = 1,000,000 USD).
MAX_NANOS = 10**15
FINAL_STATES = frozenset({"settled", "void"})
STATES = frozenset({"pending", "estimated", "settled", "void"})


def non_negative_int(value: Any) -> int:
    """Read a count or an amount leniently: ints, digit strings, non-negative floats; else 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, str):
        text = value.strip()
        # isascii: '²'.isdigit() is true but int('²') raises.
        return int(text) if text.isascii() and text.isdigit() else 0
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return int(value)
    return 0


class InvalidAmount(ValueError):
    """A billed amount that is not a whole number of nanos from 0 to ``MAX_NANOS``."""


def amount_nanos(value: Any, name: str = "amount") -> int:
    """Return a billed amount in nanos (None reads as 0), or raise ``InvalidAmount``."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise InvalidAmount(f"{name} is not a number of nanos: {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise InvalidAmount(f"{name} is not a whole number of nanos: {value!r}")
        value = int(value)
    elif isinstance(value, str):
        text = value.strip()
        # isascii: '²'.isdigit() is true but int('²') raises; 20 digits: beyond any valid amount.
        if not (text.isascii() and text.isdigit()) or len(text) > 20:
            raise InvalidAmount(f"{name} is not a whole number of nanos: {value[:40]!r}")
        value = int(text)
    elif not isinstance(value, int):
        raise InvalidAmount(f"{name} is not a number of nanos: {type(value).__name__}")
    if not 0 <= value <= MAX_NANOS:
        raise InvalidAmount(f"{name} {value} is outside 0..{MAX_NANOS} nanos")
    return value


def _amount(raw: dict) -> int:
    """The amount in nanos: ``total_nanos`` when the object has one, else ``cost_nanos``."""
    value = raw.get("total_nanos")
    if value is not None:
        return amount_nanos(value, "total_nanos")
    return amount_nanos(raw.get("cost_nanos"), "cost_nanos")


def _retrieve_state(raw: dict) -> str:
    """Apply the retrieve-shape rule (see the module docstring)."""
    if raw.get("billed") is not True:
        return "pending"
    return "settled" if raw.get("charged") is True or _amount(raw) > 0 else "void"


def normalize_billing(raw: Any) -> dict | None:
    """Return the billing fields we reason about, from either shape; None when there is none."""
    if not isinstance(raw, dict):
        return None
    if raw.get("state") is not None:
        state = str(raw["state"]).strip().lower()
        state = state if state in STATES else "pending"
    else:
        state = _retrieve_state(raw)
    billing: dict[str, Any] = {
        "state": state,
        "total_nanos": _amount(raw) if state == "settled" else 0,
        "currency": str(raw.get("currency") or "usd").lower()[:16],
        "charged": raw.get("charged") if isinstance(raw.get("charged"), bool) else None,
        "billable": raw.get("billable") if isinstance(raw.get("billable"), bool) else None,
        "charge_reason": _short(raw.get("charge_reason") or raw.get("reason")),
        # Retrieve says when billing was finalised; the payload says when it was billed.
        "billed_at": _short(raw.get("billed_at") or raw.get("finalized_at")),
    }
    if "billed" in raw:
        billing["billed"] = raw.get("billed") is True
    for key in ("estimated_nanos", "reserved_nanos"):
        if raw.get(key) is not None:
            billing[key] = min(non_negative_int(raw[key]), MAX_NANOS)  # shown only; bounded anyway
    for key in ("settled_provider_cost", "settled_user_cost"):
        if raw.get(key) is not None:
            billing[key] = str(raw[key])[:64]
    return billing


def _short(value: Any) -> Any:
    """Keep a descriptive billing value only when it is a short scalar."""
    if isinstance(value, str):
        return value[:200]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return value
    return None


def billing_rank(billing: dict | None) -> int:
    """Order billing by how final it is: none < pending/estimated < settled/void."""
    if not billing:
        return 0
    return 2 if billing.get("state") in FINAL_STATES else 1


def is_settled_or_void(billing: dict | None) -> bool:
    """Tell whether billing is final (it can no longer change upstream)."""
    return bool(billing) and billing.get("state") in FINAL_STATES


def billing_day(record: dict) -> str:
    """Return the UTC day (YYYY-MM-DD) a batch's cost belongs to."""
    billing = record.get("billing") or {}
    for value in (billing.get("billed_at"), record.get("finalized_at"), record.get("updated_at")):
        seconds = parse_time(value)
        if seconds is not None:
            return utc_day(seconds)
    return "unknown"


def contribution(record: dict) -> tuple[int, dict[str, str]]:
    """Return what a record adds to the billing ledger: nanos and their attribution."""
    billing = record.get("billing") or {}
    nanos = amount_nanos(billing.get("total_nanos"), "total_nanos") if billing.get("state") == "settled" else 0
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
