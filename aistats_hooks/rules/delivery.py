"""A received webhook delivery: the event kinds there are, and parsing a verified body into an ``Event``.

Parsing is lenient about everything it does not need (unknown fields, extra
keys) and strict about the three it does: the event id, its type and the
batch id. It bounds what it accepts (the body size is bounded before): JSON
nested at most ``MAX_DEPTH`` deep, at most ``MAX_VALUES`` values, strings of
at most ``MAX_STRING`` characters, no NaN or Infinity (nor a number too
large for a float), and a batch id that can name a batch (not ``.`` or
``..``, no ``/`` or ``\\``, printable, at most ``MAX_ID_LENGTH``).
Signature checks live in ``signatures``; storage in ``store``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import PayloadError

# Event types are "<family>.<kind>": the gateway names batch events `batch.*`,
# and subscriptions may use the generic `job.*` form. Every place that needs
# the kinds (the receiver, the CLI's checks and samples, compaction) reads them here.
EVENT_FAMILIES = ("batch", "job")
# kind -> the batch status an event of that kind reports.
KIND_STATUS = {
    "created": "pending",
    "progress": "in_progress",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
    "expired": "expired",
}
EVENT_KINDS = tuple(KIND_STATUS)
# Accepted on receipt: the kinds, and the American spelling some surfaces use.
BATCH_EVENT_KINDS = frozenset(EVENT_KINDS) | {"canceled"}
TERMINAL_EVENT_TYPES = frozenset(
    f"{family}.{kind}" for family in EVENT_FAMILIES for kind in ("completed", "failed", "cancelled", "canceled", "expired")
)
MAX_ID_LENGTH = 256
MAX_DEPTH = 32
MAX_VALUES = 10_000
MAX_STRING = 65_536
# A typical delivery nests ~5 deep with ~13 brackets: below this, the walk is skipped.
_SHAPE_CHECK_BYTES = 16_384
HEADER_PREFIX = "x-phaseo-"
_ENVIRON_PREFIX = "HTTP_X_PHASEO_"


@dataclass(frozen=True)
class Event:
    """A verified delivery, as much of it as the pipeline needs."""

    id: str
    type: str
    batch_id: str
    attempt: int
    delivery_key: str | None
    created_at: object
    data: dict

    @property
    def is_batch_event(self) -> bool:
        """Tell whether this event concerns a batch (``batch.*`` or ``job.*``)."""
        family, _, name = self.type.partition(".")
        return family in EVENT_FAMILIES and name.split(":")[0] in BATCH_EVENT_KINDS


def _text_id(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"missing_{name}")
    if len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise PayloadError(f"invalid_{name}")
    return value


def _batch_id(value: object) -> str:
    batch_id = _text_id(value, "data_id")
    # The SDK refuses to send these (a URL path segment), so no retrieve could ever reconcile them.
    if batch_id in (".", "..") or "/" in batch_id or "\\" in batch_id:
        raise PayloadError("invalid_data_id")
    return batch_id


def _non_finite(name: str) -> float:
    raise PayloadError("non_finite_number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 reads as inf
        raise PayloadError("non_finite_number")
    return value


def _check_shape(payload: object) -> None:
    """Refuse JSON nested too deep, with too many values or too long strings (iterative)."""
    stack, values = [(payload, 1)], 0
    while stack:
        item, depth = stack.pop()
        values += 1
        if values > MAX_VALUES:
            raise PayloadError("too_many_values")
        if isinstance(item, dict):
            if depth > MAX_DEPTH:
                raise PayloadError("too_deep")
            for key, value in item.items():
                if len(key) > MAX_STRING:
                    raise PayloadError("string_too_long")
                stack.append((value, depth + 1))
        elif isinstance(item, list):
            if depth > MAX_DEPTH:
                raise PayloadError("too_deep")
            stack.extend((value, depth + 1) for value in item)
        elif isinstance(item, str) and len(item) > MAX_STRING:
            raise PayloadError("string_too_long")


def parse_event(body: bytes, headers: Mapping[str, str] | None = None) -> Event:
    """Parse a webhook body, or raise ``PayloadError`` naming what is wrong."""
    try:
        payload = json.loads(body, parse_constant=_non_finite, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: deeply nested arrays ("[[[[...") exhaust the parser.
        raise PayloadError("invalid_json") from None
    # Counting brackets is a cheap upper bound of the depth: walk only when it could be too deep or too big.
    if len(body) > _SHAPE_CHECK_BYTES or body.count(b"{") + body.count(b"[") > MAX_DEPTH:
        _check_shape(payload)
    if not isinstance(payload, dict):
        raise PayloadError("not_an_object")
    event_id = _text_id(payload.get("id"), "id")
    event_type = _text_id(payload.get("type"), "type")
    data = payload.get("data")
    if not isinstance(data, dict):
        raise PayloadError("missing_data")
    batch_id = _batch_id(data.get("id"))
    if headers is not None:
        header_id = headers.get("x-phaseo-event-id")
        if header_id and header_id != event_id:
            raise PayloadError("event_id_mismatch")
    delivery = payload.get("delivery") if isinstance(payload.get("delivery"), dict) else {}
    attempt = delivery.get("attempt")
    if not isinstance(attempt, int) or isinstance(attempt, bool):
        raw = (headers or {}).get("x-phaseo-attempt", "")
        # isascii: "²".isdigit() is true, but int("²") raises.
        attempt = int(raw) if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) < 6 else 1
    key = delivery.get("key")
    return Event(
        id=event_id,
        type=event_type,
        batch_id=batch_id,
        attempt=attempt,
        delivery_key=key if isinstance(key, str) else None,
        created_at=payload.get("created_at"),
        data=data,
    )


def phaseo_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Keep the ``x-phaseo-*`` headers of a delivery, for the audit record."""
    environ = getattr(headers, "environ", None)
    if isinstance(environ, dict):
        # werkzeug's EnvironHeaders: reading the WSGI environ directly is ~10x
        # cheaper than iterating the header view, on the acknowledgement path.
        return {k[5:].lower().replace("_", "-"): v[:512] for k, v in environ.items() if k.startswith(_ENVIRON_PREFIX)}
    return {k.lower(): v[:512] for k, v in headers.items() if k.lower().startswith(HEADER_PREFIX)}
