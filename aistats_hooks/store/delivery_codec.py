"""How one received event is stored: packed metadata, headers and raw body.

Within its batch's hash an event's field is its id with the redundant
``evt_batch_{batch_id}_`` prefix cut to ``~`` (ids repeat the batch id), and
any other id behind ``=``: so no two ids share a field (``~x`` the id would
be ``=~x``), and no event field starts with ``#``, which the outcomes hash
keeps for its bookkeeping (``#d{field}`` duplicates, ``#bytes``). Fields of
an older store (no marker) still read back as the bare id.
The value is ``compression.pack`` of a JSON line of metadata (type, delivery key,
attempt, received time, headers) followed by the raw body, byte for byte.
Headers that merely repeat the payload are rebuilt on read, not stored.
Once a batch is final, the bodies of its superseded snapshots (created and
progress events) may be dropped: metadata ``"x": 1`` marks them.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping

from . import compression
from ..rules.delivery import Event, phaseo_headers

# One encoder for the metadata line: json.dumps with separators builds a new one per call.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def pack(event: Event, body: bytes, headers: Mapping[str, str], received_ms: int) -> bytes:
    """Return the stored form of one delivery."""
    meta = {"t": event.type, "k": event.delivery_key, "a": event.attempt, "r": received_ms}
    derived = _derived_headers(event.id, meta)
    meta["h"] = {k: v for k, v in phaseo_headers(headers).items() if derived.get(k) != v}
    return compression.pack(_COMPACT.encode(meta).encode() + b"\n" + body)


def strip_body(blob: bytes, keep_types: Collection[str]) -> bytes | None:
    """Return the stored event without its body (metadata and headers kept).

    None when its type is in ``keep_types`` or its body is already gone.
    """
    meta_line, _, _ = compression.unpack(blob).partition(b"\n")
    meta = json.loads(meta_line)
    if meta.get("x") or meta.get("t") in keep_types:
        return None
    meta["x"] = 1  # the body was dropped once the batch was final
    return compression.pack(json.dumps(meta, separators=(",", ":")).encode() + b"\n")


def decode(batch_id: str, field: str, blob: bytes, states: Mapping[str, str]) -> dict:
    """Return a stored event as a dict; ``states`` is the batch's outcomes hash."""
    meta_line, _, body = compression.unpack(blob).partition(b"\n")
    meta = json.loads(meta_line)
    outcome, _, _ = states.get(field, "unknown:").partition(":")
    text = body.decode("utf-8", "replace")
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        payload = None
    event_id = unfield(field, batch_id)
    return {
        "id": event_id,
        "type": meta.get("t"),
        "key": meta.get("k"),
        "attempt": meta.get("a"),
        "received_at": meta.get("r"),
        "outcome": outcome,
        "duplicates": int(states.get(duplicates_field(field), 0)),
        "headers": {**_derived_headers(event_id, meta), **meta.get("h", {})},
        "body": None if meta.get("x") else text,
        "payload": payload,
        "body_dropped": bool(meta.get("x")),
    }


def field(event_id: str, batch_id: str) -> str:
    """Return the compact hash field for ``event_id`` within its batch."""
    prefix = f"evt_batch_{batch_id}_"
    return "~" + event_id[len(prefix):] if event_id.startswith(prefix) else "=" + event_id


def unfield(name: str, batch_id: str) -> str:
    """Invert ``field`` (a field with no marker was written by an older store: the bare id)."""
    if name.startswith("~"):
        return f"evt_batch_{batch_id}_{name[1:]}"
    return name[1:] if name.startswith("=") else name


def duplicates_field(name: str) -> str:
    """Return the outcomes-hash field counting the duplicates of event field ``name``."""
    return "#d" + name


def _derived_headers(event_id: str, meta: dict) -> dict[str, str]:
    """Return the x-phaseo-* headers a delivery of this event carries by definition."""
    derived = {"x-phaseo-event-id": event_id, "x-phaseo-event-type": meta.get("t") or ""}
    if meta.get("k"):
        derived["x-phaseo-delivery-key"] = meta["k"]
    if meta.get("a") is not None:
        derived["x-phaseo-attempt"] = str(meta["a"])
    return derived
