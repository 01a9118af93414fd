"""``POST /webhooks/aistats`` answered at the WSGI level, before Flask's machinery.

The acknowledgement path is the service's hot path: under load, Flask's
request context, URL routing, before/after hooks, ``jsonify`` and Response
object cost about a quarter of the receiver's in-process CPU per delivery
(profiled; bare Flask in the bench pays them too, for an empty answer). This
middleware takes exactly ``POST`` on exactly that path and hands everything
else, including other methods on it (405 with ``Allow``), to Flask unchanged.

It gives the same answers as the app: ``receiver.accept`` decides them, the
body is read through werkzeug's own bounded stream (``MAX_CONTENT_LENGTH``,
``Content-Length`` or the server's terminated chunked stream), failures
answer the JSON ``errors`` writes (503 when Redis fails, 500 on a crash), and
``request_log``'s ``X-Request-ID`` header and log line (with its level rules)
are kept.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable

from flask import Flask
from flask import Request as FlaskRequest
from flask import Response as FlaskResponse
from redis.exceptions import RedisError
from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_content_length, get_input_stream

from . import receiver, request_log
from .context import get_secret_ring, get_store

log = logging.getLogger("aistats_hooks.web")
request_logger = logging.getLogger(request_log.REQUEST_LOGGER)

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]
# As jsonify writes it (compact, ASCII, keys in insertion order); one encoder, not one per call.
_JSON = json.JSONEncoder(separators=(",", ":"))


class WebhookFastPath:
    """WSGI middleware: ``POST /webhooks/aistats`` here, every other request to ``wsgi_app``."""

    def __init__(self, app: Flask, wsgi_app: WSGIApp) -> None:
        self.wsgi_app = wsgi_app
        self.store = get_store(app)
        self.ring = get_secret_ring(app)
        self.max_body = app.config["MAX_CONTENT_LENGTH"]

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != receiver.PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        status, answer = self._answer(environ)
        payload = _JSON.encode(answer).encode() + b"\n"
        given = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = given if request_log._REQUEST_ID.match(given) else request_log.new_request_id()
        level = request_log.request_level(status)
        if request_logger.isEnabledFor(level):  # a 2xx logs at DEBUG: usually this check is all it costs
            self._log(environ, status, payload, request_id, started, level)
        start_response(_status_line(status), [("Content-Type", "application/json"),
                                              ("Content-Length", str(len(payload))), ("X-Request-ID", request_id)])
        return [payload]

    def _answer(self, environ: dict) -> tuple[int, dict]:
        """Read the body within the limit and let ``receiver.accept`` decide; failures as ``errors`` answers them."""
        try:
            try:
                body = get_input_stream(environ, max_content_length=self.max_body).read()
            except RequestEntityTooLarge:
                body = None
            return receiver.accept(body, get_content_length(environ), EnvironHeaders(environ), self.store, self.ring)
        except HTTPException as exc:  # a body shorter than its Content-Length (400), ...
            code = (exc.name or "error").lower().replace(" ", "_")
            return exc.code or 500, {"error": code, "reason": exc.description}
        except RedisError as exc:
            log.error("redis unavailable: %s", type(exc).__name__)
            return 503, {"error": "store_unavailable", "reason": "Redis did not answer; retry later"}
        except Exception:
            log.exception("unhandled error")
            return 500, {"error": "internal_error", "reason": "an unexpected error occurred"}

    @staticmethod
    def _log(environ: dict, status: int, payload: bytes, request_id: str, started: float, level: int) -> None:
        """Write ``request_log``'s line for this request (only built when its level is on)."""
        request = FlaskRequest(environ, shallow=True)
        response = FlaskResponse(payload, status=status, mimetype="application/json")
        request_logger.log(level, "%s %s %s", request.method, request.path, status,
                           extra=request_log._request_fields(request, response, request_id, started))


def _status_line(status: int) -> str:
    return _STATUS_LINES.get(status) or f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN').upper()}"


_STATUS_LINES = {code: f"{code} {name.upper()}" for code, name in HTTP_STATUS_CODES.items()}


def install(app: Flask) -> None:
    """Serve ``POST /webhooks/aistats`` of ``app`` through the fast path (call once its store is attached)."""
    app.wsgi_app = WebhookFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
