"""The change feed: every announced transition, in order, in one Redis stream.

COMMIT appends to ``{p}:changes`` in the same atomic step that stores the new
state (see ``store.commit``), so an entry exists exactly when its change was
stored. Each entry: ``batch_id``, ``transition``, ``status``,
``settled_nanos`` (empty unless settled) and ``at`` (ISO-8601 UTC).
Services in any language read it with ``XREAD``/``XREADGROUP``; this module
pages through it for ``GET /changes`` and follows it for the CLI.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from redis import Redis

from ..keys import Keys

FIELDS = ("batch_id", "transition", "status", "settled_nanos", "at")
MAX_PAGE = 1000
_CURSOR = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")  # ASCII digits only: \d takes any script's
_ID_MAX = 2**64 - 1  # each half of a stream id is an unsigned 64-bit number


class BadCursor(ValueError):
    """A cursor that is not a stream entry id (``<ms>-<seq>``)."""


def entry(entry_id: bytes | str, fields: dict) -> dict[str, Any]:
    """Return one stream entry as the feed shows it."""
    text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()}
    nanos = text.get("settled_nanos") or ""
    return {
        "id": entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
        "batch_id": text.get("batch_id"),
        "transition": text.get("transition"),
        "status": text.get("status"),
        "settled_nanos": int(nanos) if nanos.isdigit() else None,
        "at": text.get("at"),
    }


def page(redis: Redis, keys: Keys, *, after: str | None = None, limit: int = 100) -> tuple[list[dict], str | None]:
    """Return up to ``limit`` entries after the cursor ``after`` (from the start when None), and the next cursor."""
    if after is not None:
        # Checked here, not by Redis: its refusal would read as the store failing (503), not a bad cursor.
        match = _CURSOR.fullmatch(after)  # not match: "$" lets a trailing newline through
        if not match or max(int(match[1]), int(match[2])) > _ID_MAX:
            raise BadCursor(f"cursor must be an entry id such as 1781712000000-0, got {after[:60]!r}")
        if int(match[1]) == int(match[2]) == _ID_MAX:
            return [], after  # nothing can follow the last possible id
    start = f"({after}" if after else "-"
    raw = redis.xrange(keys.changes, min=start, max="+", count=max(1, min(limit, MAX_PAGE)))
    rows = [entry(i, f) for i, f in raw]
    return rows, (rows[-1]["id"] if rows else after)


def follow(redis: Redis, keys: Keys, *, after: str = "$", block_ms: int = 5000) -> Iterator[dict]:
    """Yield entries as they are appended (after ``after``; "$" = from now), forever."""
    last = after
    while True:
        for _stream, items in redis.xread({keys.changes: last}, block=block_ms, count=100) or []:
            for entry_id, fields in items:
                row = entry(entry_id, fields)
                last = row["id"]
                yield row
