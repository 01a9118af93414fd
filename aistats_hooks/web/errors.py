"""JSON errors everywhere: every HTTP error and every crash answers JSON."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from .params import BadParameter

log = logging.getLogger("aistats_hooks.web")


def error(status: int, code: str, reason: str | None = None, **extra):
    """Return a JSON error response."""
    body = {"error": code}
    if reason:
        body["reason"] = reason
    body.update(extra)
    return jsonify(body), status


def init_app(app: Flask) -> None:
    """Answer every error of ``app`` as JSON."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        response = error(exc.code or 500, code, exc.description)[0]
        response.status_code = exc.code or 500
        if exc.code == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(BadParameter)
    def bad_parameter(exc: BadParameter):
        return error(400, "bad_request", str(exc))

    @app.errorhandler(RedisError)
    def redis_down(exc: RedisError):
        log.error("redis unavailable: %s", type(exc).__name__)
        return error(503, "store_unavailable", "Redis did not answer; retry later")

    @app.errorhandler(Exception)
    def crash(exc: Exception):
        log.exception("unhandled error")
        return error(500, "internal_error", "an unexpected error occurred")
