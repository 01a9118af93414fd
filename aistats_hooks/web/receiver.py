"""``POST /webhooks/aistats``: verify, record and queue; answer only once durable.

The acknowledgement path makes no upstream call: the INGEST script records the
delivery and takes its batch's slot, then the batch's job is enqueued through RQ
(``store.ingest``: how a crash between the two is repaired). Verification runs on
the raw bytes before any parsing; the body size is bounded by ``MAX_CONTENT_LENGTH``
before reading. A Flask view like any other: request ids, logs and errors come from
``request_log`` and ``errors``. ``accept`` decides the answer to one delivery.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, jsonify, request
from redis.exceptions import RedisError
from werkzeug.exceptions import RequestEntityTooLarge

from .. import tracing
from ..rules.delivery import parse_event
from ..endpoint_secrets import SecretRing
from ..errors import PayloadError, SignatureError
from ..rules.signatures import verify_signature
from ..store.ingest import NotReplicated
from .context import get_secret_ring, get_store

bp = Blueprint("webhooks", __name__)

PATH = "/webhooks/aistats"


@bp.post(PATH)
def receive():
    """Accept one delivery from the gateway."""
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        body = None
    status, answer = accept(body, request.content_length, request.headers, get_store(), get_secret_ring())
    return jsonify(answer), status


def accept(body: bytes | None, content_length: int | None, headers: Mapping, store, ring: SecretRing) -> tuple[int, dict]:
    """Return (status, JSON answer) for one delivery; ``body`` is None when it was over the size limit.

    Raises ``RedisError`` only when the store failed while recording (the caller answers 503).
    """
    settings = store.settings
    # A chunked body (no Content-Length) is cut at the limit rather than refused:
    # one that fills it is treated as over it.
    if body is None or (content_length is None and len(body) >= settings.max_body_bytes):
        _count(store, "oversize")
        return _refuse(413, "payload_too_large", f"bodies are limited to {settings.max_body_bytes} bytes")
    refusal = _verify(body, headers, ring, settings)
    if refusal is not None:
        status, code, reason = refusal
        _count(store, reason)
        return _refuse(status, code, reason)
    try:
        event = parse_event(body, headers)
    except PayloadError as exc:
        _count(store, exc.reason)
        return _refuse(400, "invalid_payload", exc.reason)
    ignore = not event.is_batch_event
    try:
        outcome = store.ingest(event, body, headers, ignore=ignore, traceparent=tracing.current_traceparent())
    except NotReplicated:
        # Recorded on the primary, not yet on AISTATS_MIN_REPLICAS replicas: not acknowledged.
        # The gateway's retry finds it (a duplicate) and WAITs again.
        _count(store, "not_replicated")
        return _refuse(503, "store_unavailable", "not_replicated")
    # The traceparent went beside the batch in INGEST itself: the reconcile's span continues this one.
    tracing.annotate(batch_id=event.batch_id, event_id=event.id, event_type=event.type, outcome=outcome)
    if outcome == "duplicate":
        return 200, {"status": "duplicate", "event_id": event.id}
    if outcome == "ignored":
        return 202, {"status": "ignored", "event_id": event.id}
    if outcome == "limited":
        # The batch already holds AISTATS_MAX_BATCH_EVENTS events or AISTATS_MAX_BATCH_BYTES:
        # acknowledged (a retry would change nothing), not stored, counted in deliveries.limited.
        return 202, {"status": "ignored", "event_id": event.id, "reason": "batch_event_limit"}
    return 202, {"status": "queued", "event_id": event.id, "batch_id": event.batch_id, "job": outcome}


def _refuse(status: int, code: str, reason: str) -> tuple[int, dict]:
    """The JSON error answer, as ``errors.error`` writes it."""
    return status, {"error": code, "reason": reason}


def _verify(body: bytes, headers: Mapping, ring: SecretRing, settings) -> tuple[int, str, str] | None:
    """Return (status, error, reason) for a delivery that must be refused, or None when it verifies.

    A mismatch re-reads the stored endpoint secrets (at most once a second)
    before refusing, so a secret rotated a moment ago verifies at once.
    """
    try:
        secrets = ring.secrets()
    except RedisError:
        # Fail closed: without the stored secrets we cannot tell a forgery from a delivery.
        return 503, "store_unavailable", "secrets_unavailable"
    if not secrets:
        if settings.allow_unsigned:
            return None
        return 503, "no_webhook_secret", "no_secret"
    try:
        verify_signature(body, headers, secrets, tolerance=settings.webhook_tolerance)
        return None
    except SignatureError as exc:
        reason = exc.reason
        try:
            if reason == "mismatch" and ring.reload():
                verify_signature(body, headers, ring.secrets(), tolerance=settings.webhook_tolerance)
                return None
        except SignatureError as again:
            reason = again.reason
        except RedisError:
            pass
        return 401, "invalid_signature", reason


def _count(store, reason: str) -> None:
    """Count a rejection; a Redis outage must not turn a 4xx into a 5xx."""
    try:
        store.count_rejection(reason)
    except RedisError:
        pass
