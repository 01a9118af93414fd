"""The query API: reconciled batches, their events and billing, behind a token."""

from __future__ import annotations

import re
from datetime import date

from flask import Blueprint, jsonify, request

from .. import queries

from ..effects import archiving
from ..rules.status import BatchStatus
from . import params
from .auth import require_token
from .context import get_store
from .errors import error

bp = Blueprint("query", __name__)
_STATUSES = {s.value for s in BatchStatus}
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Bookkeeping the store keeps on a record that is no part of the API: ``announced`` is the state the last
# transitions were computed from (transitions.py); GET /changes is the public view of what it drives.
INTERNAL_FIELDS = frozenset({"announced"})


def public(record: dict) -> dict:
    """Return ``record`` without its internal bookkeeping."""
    return {k: v for k, v in record.items() if k not in INTERNAL_FIELDS}


@bp.get("/batches/<batch_id>")
@require_token
def get_batch(batch_id: str):
    """Return one reconciled batch."""
    store = get_store()
    record = store.get(batch_id)
    if record is None:
        return error(404, "not_found", f"no batch {batch_id!r} is known here")
    archived = archiving.read_state(store.redis, store.keys, batch_id)
    if archived is not None:  # {url, status, files}: where its result files are kept (archive.py)
        record = {**record, "archive": archived}
    return jsonify(public(record))


@bp.get("/batches/<batch_id>/events")
@require_token
def batch_events(batch_id: str):
    """Return the events received for one batch, oldest first."""
    events = get_store().events(batch_id)
    if not events and get_store().get(batch_id) is None:
        return error(404, "not_found", f"no batch {batch_id!r} is known here")
    keep = ("id", "type", "key", "attempt", "received_at", "outcome", "duplicates")
    return jsonify({"batch_id": batch_id, "data": [{k: e.get(k) for k in keep if k in e} for e in events]})


@bp.get("/batches")
@require_token
def list_batches():
    """Return batches newest first, filtered, one page at a time."""
    args = request.args
    params.only({"status", "session_id", "model", "limit", "cursor"})
    status = args.get("status") or None
    if status and status not in _STATUSES:
        return error(400, "bad_request", f"status must be one of {', '.join(sorted(_STATUSES))}")
    count = params.limit(50, queries.MAX_LIMIT)
    cursor = args.get("cursor") or None
    if cursor:
        try:
            queries.decode_cursor(cursor)
        except (ValueError, UnicodeDecodeError):
            return error(400, "bad_request", "cursor is not one this API returned")
    page = queries.list_batches(
        get_store(),
        status=status,
        session_id=args.get("session_id") or None,
        model=args.get("model") or None,
        limit=count,
        cursor=cursor,
    )
    return jsonify({**page, "data": [public(record) for record in page["data"]]})


@bp.get("/billing/summary")
@require_token
def billing_summary():
    """Return billing totals in nanos and USD, grouped by day, session, model or provider."""
    args = request.args
    params.only({"group_by", "since", "until"})
    group_by = args.get("group_by", "day")
    if group_by not in queries.GROUPS:
        return error(400, "bad_request", f"group_by must be one of {', '.join(queries.GROUPS)}")
    bounds = {}
    for name in ("since", "until"):
        raw = args.get(name)
        try:
            if raw and not _DAY.fullmatch(raw):
                raise ValueError(raw)
            bounds[name] = date.fromisoformat(raw) if raw else None
        except ValueError:
            return error(400, "bad_request", f"{name} must be a date, YYYY-MM-DD")
    if bounds["since"] and bounds["until"] and bounds["since"] > bounds["until"]:
        return error(400, "bad_request", "since must not be after until")
    return jsonify(queries.billing_summary(get_store(), group_by, bounds["since"], bounds["until"]))
