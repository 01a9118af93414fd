"""``GET /changes``: the change feed over HTTP, in order, one page at a time (token required)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from .. import changes
from .auth import require_token
from .context import get_store
from .errors import error

bp = Blueprint("changes", __name__)


@bp.get("/changes")
@require_token
def list_changes():
    """Return transitions after ``after`` (a cursor this API returned; omit to start at the oldest kept)."""
    args = request.args
    unknown = set(args) - {"after", "limit"}
    if unknown:
        return error(400, "bad_request", f"unknown parameter(s): {', '.join(sorted(unknown))}")
    raw_limit = args.get("limit", "100")
    if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= changes.MAX_PAGE:
        return error(400, "bad_request", f"limit must be a whole number from 1 to {changes.MAX_PAGE}")
    store = get_store()
    try:
        rows, cursor = changes.page(store.redis, store.keys, after=args.get("after") or None, limit=int(raw_limit))
    except changes.BadCursor as exc:
        return error(400, "bad_request", str(exc))
    return jsonify(data=rows, next_cursor=cursor)
