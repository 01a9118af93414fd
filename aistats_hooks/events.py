"""Webhook events: parsing a verified body into an ``Event``, nothing more.

Parsing is lenient about everything it does not need (unknown fields, extra
keys) and strict about the three it does: the event id, its type and the
batch id. Signature checks live in ``signatures``; storage in ``store``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import PayloadError

BATCH_EVENT_TYPES = frozenset(
    {"created", "progress", "completed", "failed", "cancelled", "canceled", "expired"}
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
        return family in ("batch", "job") and name.split(":")[0] in BATCH_EVENT_TYPES


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
