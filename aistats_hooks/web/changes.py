"""``GET /changes``: the change feed over HTTP, in order, one page at a time (token required)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..effects import changes
from . import params
from .auth import require_token
from .context import get_store
from .errors import error

bp = Blueprint("changes", __name__)


@bp.get("/changes")
@require_token
def list_changes():
    """Return transitions after ``after`` (a cursor this API returned; omit to start at the oldest kept)."""
    params.only({"after", "limit"})
    count = params.limit(100, changes.MAX_PAGE)
    store = get_store()
    try:
        rows, cursor = changes.page(store.redis, store.keys, after=request.args.get("after") or None, limit=count)
    except changes.BadCursor as exc:
        return error(400, "bad_request", str(exc))
    return jsonify(data=rows, next_cursor=cursor)
