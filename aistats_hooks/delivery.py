"""A received webhook delivery: the event kinds there are, and parsing a verified body into an ``Event``.

Parsing is lenient about everything it does not need (unknown fields, extra
keys) and strict about the three it does: the event id, its type and the
batch id. Signature checks live in ``signatures``; storage in ``store``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import PayloadError

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


def parse_event(body: bytes, headers: Mapping[str, str] | None = None) -> Event:
    """Parse a webhook body, or raise ``PayloadError`` naming what is wrong."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: deeply nested arrays ("[[[[...") exhaust the parser.
        raise PayloadError("invalid_json") from None
    if not isinstance(payload, dict):
        raise PayloadError("not_an_object")
    event_id = _text_id(payload.get("id"), "id")
    event_type = _text_id(payload.get("type"), "type")
    data = payload.get("data")
    if not isinstance(data, dict):
        raise PayloadError("missing_data")
    batch_id = _text_id(data.get("id"), "data_id")
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
