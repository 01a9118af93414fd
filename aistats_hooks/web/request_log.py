"""One log line per request, and a request id on every answer.

Acknowledgements are the hot path: a 2xx logs at DEBUG, so with DEBUG off
the after-request hook costs one level check and the ``X-Request-ID`` header.
Lines go through ``aistats_hooks.logs``' JSON formatter and redaction.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import Any

REQUEST_LOGGER = "aistats_hooks.web.request"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Where a request keeps (its id, its start): the WSGI environ, one proxy lookup away, cheaper than ``g``.
_ENVIRON_KEY = "aistats_hooks.request"


def request_level(status: int) -> int:
    """Return the level of a request's line: DEBUG for a success, INFO for a refusal, ERROR for a failure."""
    if status < 400:
        return logging.DEBUG
    return logging.INFO if status < 500 else logging.ERROR


def new_request_id() -> str:
    """Return a fresh request id: 32 hex digits, like ``uuid4().hex`` at a sixth of the cost."""
    return os.urandom(16).hex()


def init_app(app) -> None:
    """Give each request an id (``X-Request-ID``, kept when sane) and log one line per request."""
    from flask import request

    log = logging.getLogger(REQUEST_LOGGER)

    @app.before_request
    def _start():
        environ = request.environ
        given = environ.get("HTTP_X_REQUEST_ID", "")
        environ[_ENVIRON_KEY] = (given if _REQUEST_ID.match(given) else new_request_id(), time.perf_counter())

    @app.after_request
    def _finish(response):
        request_id, started = request.environ.get(_ENVIRON_KEY) or (new_request_id(), None)
        response.headers.setdefault("X-Request-ID", request_id)
        level = request_level(response.status_code)
        # Acknowledgements are the hot path and log at DEBUG: with DEBUG off, this check is all they cost.
        if log.isEnabledFor(level):
            extra = _request_fields(request, response, request_id, started)
            log.log(level, "%s %s %s", request.method, request.path, response.status_code, extra=extra)
        return response


def _request_fields(request, response, request_id: str, started: float | None) -> dict[str, Any]:
    """Return the fields of a request's line: ids, status, duration, and what the JSON answer said."""
    fields: dict[str, Any] = {
        "request_id": request_id,
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started is not None else 0.0,
    }
    event_id = request.headers.get("x-phaseo-event-id")
    if event_id:
        fields["event_id"] = event_id[:256]
        fields["event_type"] = (request.headers.get("x-phaseo-event-type") or "")[:64] or None
        fields["attempt"] = (request.headers.get("x-phaseo-attempt") or "")[:8] or None
    batch_id = (request.view_args or {}).get("batch_id")
    body = _small_json(response)
    if isinstance(body, dict):
        batch_id = batch_id or body.get("batch_id")
        for key in ("status", "error", "reason"):
            if isinstance(body.get(key), str):
                fields["outcome" if key == "status" else key] = body[key][:200]
        if not event_id and isinstance(body.get("event_id"), str):
            fields["event_id"] = body["event_id"][:256]
    if batch_id:
        fields["batch_id"] = str(batch_id)[:256]
    return fields


def _small_json(response) -> Any:
    """Return a small JSON response body as an object, else None (never consume a stream)."""
    if response.is_streamed or response.mimetype != "application/json" or (response.content_length or 0) > 4096:
        return None
    try:
        return json.loads(response.get_data())
    except (ValueError, RuntimeError):
        return None
