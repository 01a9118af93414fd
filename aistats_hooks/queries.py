"""Read models of the query API: batch listings and billing summaries.

Both answer from indexes, so their cost depends on the page asked for, not
on how many batches are stored.
"""

from __future__ import annotations

import base64
from datetime import date, timedelta

from .rules.billing import nanos_to_usd
from .rules.status import BatchStatus
from .store import Store
from .store.ledger import Ledger
from .store.records import Records

GROUPS = ("day", "session_id", "model", "provider")
MAX_LIMIT = 500
MAX_DAYS = 3660


def encode_cursor(score: int, member: str) -> str:
    """Encode a listing position as an opaque cursor."""
    return base64.urlsafe_b64encode(f"{score}:{member}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """Decode a cursor, or raise ValueError."""
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    score, _, member = raw.partition(":")
    if not member:
        raise ValueError("bad cursor")
    return int(score), member


def list_batches(
    store: Store,
    *,
    status: str | None = None,
    session_id: str | None = None,
    model: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    created_from: int | None = None,
    created_to: int | None = None,
    oldest_first: bool = False,
) -> dict:
    """Return a page of records, newest first (or oldest first), and the cursor of the next page.

    ``created_from`` / ``created_to`` (unix ms, inclusive) keep batches created in that window;
    ``total`` is how many the narrowest index holds in it (exact for one filter or none).
    """
    records = store.records
    index = records.index_key(status=BatchStatus(status).value if status else None, session_id=session_id,
                              model=model)
    window = {"low": created_from, "high": created_to, "oldest_first": oldest_first}
    offset = _offset_after(records, index, cursor, **window) if cursor else 0
    page: list[tuple[int, str, dict]] = []
    step = limit + 1
    for _ in range(20):  # bounded work when filters are sparse
        chunk = records.window(index, offset, step, **window)
        for (batch_id, score), record in zip(chunk, records.get_many([b for b, _ in chunk])):
            if record is not None and _matches(record, status, session_id, model):
                page.append((score, batch_id, record))
        offset += len(chunk)
        if len(page) > limit or len(chunk) < step:
            break
        step = min(step * 2, MAX_LIMIT * 4)
    more = len(page) > limit
    page = page[:limit]
    next_cursor = encode_cursor(page[-1][0], page[-1][1]) if more else None
    return {"data": [record for _, _, record in page], "next_cursor": next_cursor,
            "total": records.count_between(index, created_from, created_to)}


def _offset_after(records: Records, index: str, cursor: str, *, low: int | None = None, high: int | None = None,
                  oldest_first: bool = False) -> int:
    """Return the position just after the cursor's row, within the window and its order."""
    score, member = decode_cursor(cursor)
    if low is None and high is None and not oldest_first:
        rank = records.position(index, member)
        if rank is not None:
            return rank + 1
        # The row left this index (its status changed): resume at its score.
        return records.count_newer(index, score)
    if oldest_first:
        return records.count_between(index, low, score)
    return records.count_between(index, score, high)


def _matches(record: dict, status: str | None, session_id: str | None, model: str | None) -> bool:
    return (
        (not status or record.get("status") == status)
        and (not session_id or record.get("session_id") == session_id)
        and (not model or record.get("model") == model)
    )


def billing_summary(store: Store, group_by: str, since: date | None = None, until: date | None = None) -> dict:
    """Return ledger totals grouped by ``group_by`` between ``since`` and ``until`` (inclusive days)."""
    if group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}")
    ledger = store.ledger
    if since is None and until is None:
        totals = ledger.by(group_by)
    else:
        start = since or _first_day(ledger, until)
        end = until or date.today() + timedelta(days=1)
        days = [(start + timedelta(days=i)).isoformat() for i in range(min((end - start).days + 1, MAX_DAYS))]
        totals = ledger.by_on_days(group_by, days)
    groups = [
        {"key": key, "total_nanos": nanos, "total_usd": nanos_to_usd(nanos)}
        for key, nanos in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]) if group_by != "day" else (kv[0],))
        if nanos
    ]
    total = sum(totals.values())
    return {
        "group_by": group_by,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "currency": "usd",
        "total_nanos": total,
        "total_usd": nanos_to_usd(total),
        "groups": groups,
    }


def _first_day(ledger: Ledger, until: date | None) -> date:
    days = ledger.days()
    try:
        return date.fromisoformat(days[0]) if days else (until or date.today())
    except ValueError:
        return until or date.today()
