"""``GET /forwarding/messages``: forwarded messages and their attempts, oldest first (token required).

Destinations are masked (``urls.masked``): a password, token or query value never leaves the service.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..effects import forwarding
from ..urls import masked
from . import params
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
    params.only({"batch_id", "status", "limit"})
    status = args.get("status") or None
    if status is not None and status not in forwarding.STATUSES:
        return error(400, "bad_request", f"status must be one of {', '.join(forwarding.STATUSES)}")
    count = params.limit(100, MAX_LIMIT)
    store = get_store()
    rows = forwarding.messages(store.redis, store.keys, batch_id=args.get("batch_id") or None, status=status,
                               limit=count)
    off = forwarding.disabled(store.redis, store.keys)
    return jsonify(data=[forwarding.public(m) for m in rows],
                   destinations=[{"url": masked(u), "disabled": u in off}
                                 for u in get_settings().forward_urls])
