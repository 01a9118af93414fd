"""``GET /forwarding/messages``: forwarded messages and their attempts, oldest first (token required)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from .. import forwarding
from .auth import require_token
from .context import get_settings, get_store
from .errors import error

bp = Blueprint("forwarding", __name__)
MAX_LIMIT = 1000


@bp.get("/forwarding/messages")
@require_token
def list_messages():
    """Return messages of one batch (``batch_id``) or of all, optionally of one ``status``."""
    args = request.args
    unknown = set(args) - {"batch_id", "status", "limit"}
    if unknown:
        return error(400, "bad_request", f"unknown parameter(s): {', '.join(sorted(unknown))}")
    status = args.get("status") or None
    if status is not None and status not in forwarding.STATUSES:
        return error(400, "bad_request", f"status must be one of {', '.join(forwarding.STATUSES)}")
    raw_limit = args.get("limit", "100")
    if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= MAX_LIMIT:
        return error(400, "bad_request", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    store = get_store()
    rows = forwarding.messages(store.redis, store.keys, batch_id=args.get("batch_id") or None, status=status,
                               limit=int(raw_limit))
    off = forwarding.disabled(store.redis, store.keys)
    return jsonify(data=[forwarding.public(m) for m in rows],
                   destinations=[{"url": u.split("?", 1)[0], "disabled": u in off}
                                 for u in get_settings().forward_urls])
