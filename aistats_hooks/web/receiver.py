"""``POST /webhooks/aistats``: verify, record and queue; answer only once durable.

The acknowledgement path makes no upstream call and exactly one Redis round
trip (the INGEST script). Verification runs on the raw bytes before any
parsing; the body size is bounded by ``MAX_CONTENT_LENGTH`` before reading.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from redis.exceptions import RedisError
from werkzeug.exceptions import RequestEntityTooLarge

from ..errors import PayloadError, SignatureError
from ..events import parse_event
from ..signatures import verify_signature
from .context import get_store
from .errors import error

bp = Blueprint("webhooks", __name__)


@bp.post("/webhooks/aistats")
def receive():
    """Accept one delivery from the gateway."""
    store = get_store()
    settings = store.settings
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        body = None
    # A chunked body (no Content-Length) is cut at the limit rather than refused:
    # one that fills it is treated as over it.
    if body is None or (request.content_length is None and len(body) >= settings.max_body_bytes):
        _count(store, "oversize")
        return error(413, "payload_too_large", f"bodies are limited to {settings.max_body_bytes} bytes")
    if settings.webhook_secrets:
        try:
            verify_signature(body, request.headers, settings.webhook_secrets, tolerance=settings.webhook_tolerance)
        except SignatureError as exc:
            _count(store, exc.reason)
            return error(401, "invalid_signature", exc.reason)
    try:
        event = parse_event(body, request.headers)
    except PayloadError as exc:
        _count(store, exc.reason)
        return error(400, "invalid_payload", exc.reason)
    ignore = not event.is_batch_event
    outcome = store.ingest(event, body, request.headers, ignore=ignore)
    if outcome == "duplicate":
        return jsonify(status="duplicate", event_id=event.id), 200
    if outcome == "ignored":
        return jsonify(status="ignored", event_id=event.id), 202
    return jsonify(status="queued", event_id=event.id, batch_id=event.batch_id, job=outcome), 202


def _count(store, reason: str) -> None:
    """Count a rejection; a Redis outage must not turn a 4xx into a 5xx."""
    try:
        store.count_rejection(reason)
    except RedisError:
        pass
