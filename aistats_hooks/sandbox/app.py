"""The sandbox gateway's HTTP API: /v1 like the real gateway, /_sandbox for tests."""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from .state import Gateway
from .validation import ApiError, invalid, validate_create

MAX_LIST_LIMIT = 100


def _authorized(api_key: str) -> bool:
    """Say whether the request carries ``Bearer <api_key>``."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key.encode())


def _limit(raw: str | None) -> int:
    """Parse the list ``limit`` query parameter."""
    if raw is None or raw == "":
        return 20
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIST_LIMIT:
        raise invalid(f"limit must be a whole number from 1 to {MAX_LIST_LIMIT}", "invalid_limit")
    return int(raw)


def create_app(gateway: Gateway | None = None, **gateway_options: Any) -> Flask:
    """Build the Flask app serving ``gateway`` (or a new one built from the options)."""
    if gateway is None:
        gateway = Gateway(**gateway_options)
    app = Flask(__name__)
    app.config["GATEWAY"] = gateway
    app.json.sort_keys = False

    @app.before_request
    def authenticate():
        """Give the request an id, and refuse it without the API key."""
        g.request_id = "req_" + secrets.token_hex(8)
        if not _authorized(gateway.api_key):
            raise ApiError(401, "invalid or missing API key", code="invalid_api_key", type="authentication_error")

    @app.after_request
    def tag(response):
        """Put the request id on every response."""
        response.headers["x-request-id"] = g.get("request_id") or "req_" + secrets.token_hex(8)
        return response

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        """Render a refusal as the gateway's JSON error."""
        return jsonify(exc.to_dict()), exc.status, exc.headers

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        """Render werkzeug's errors (404 route, 405, 413...) as JSON too."""
        code = (exc.name or "error").lower().replace(" ", "_")
        kind = "not_found_error" if exc.code == 404 else "invalid_request_error"
        return jsonify({"error": {"message": exc.description, "type": kind, "code": code}}), exc.code

    @app.post("/v1/files")
    def upload_file():
        """Store an uploaded JSONL file."""
        upload = request.files.get("file")
        purpose = request.form.get("purpose", "")
        if upload is None:
            raise invalid("multipart field 'file' is required", "missing_file")
        if not purpose:
            raise invalid("multipart field 'purpose' is required", "missing_purpose")
        return jsonify(gateway.upload_file(upload.filename or "upload.jsonl", purpose, upload.read()))

    @app.post("/v1/batches")
    def create_batch():
        """Validate and create a batch."""
        body = request.get_json(silent=True)
        return jsonify(gateway.create_batch(validate_create(body), g.request_id))

    @app.get("/v1/batches")
    def list_batches():
        """List batches, newest first, with repeated status filters."""
        return jsonify(gateway.list_batches(
            request.args.getlist("status"), _limit(request.args.get("limit")), request.args.get("after") or None
        ))

    @app.get("/v1/batches/<batch_id>")
    def retrieve_batch(batch_id: str):
        """Return a batch, with its retrieve faults applied."""
        return jsonify(gateway.retrieve(batch_id))

    @app.post("/v1/batches/<batch_id>/cancel")
    def cancel_batch(batch_id: str):
        """Ask to cancel a batch."""
        return jsonify(gateway.cancel(batch_id))

    @app.get("/_sandbox/batches/<batch_id>")
    def batch_truth(batch_id: str):
        """Return the batch as it really is, no faults applied."""
        return jsonify(gateway.truth(batch_id))

    @app.get("/_sandbox/stats")
    def stats():
        """Return the sandbox's counters."""
        return jsonify(dict(gateway.stats.snapshot(), batches_by_status=gateway.batches_by_status()))

    @app.post("/_sandbox/reset-stats")
    def reset_stats():
        """Zero the counters (batches are kept)."""
        gateway.stats.reset()
        return jsonify({"ok": True})

    return app
