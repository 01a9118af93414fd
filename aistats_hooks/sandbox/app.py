"""The sandbox gateway's HTTP API: /v1 like the real gateway, /_sandbox for tests."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from . import auth
from .endpoint_routes import register_endpoint_routes
from . import population
from .errors import ApiError, flat, nested, validation
from .ids import request_id
from .shapes import TERMINAL_STATUSES
from .state import Gateway, clamp_limit
from .validation import file_rows, validate_create


def _auth_failure(gateway: Gateway) -> str | None:
    """Return why the request is not authorised (the gateway's reasons, auth.py), or None."""
    forced = gateway.take_auth_fault() if request.path.startswith("/v1/") else None
    return auth.failure(request.headers.get("Authorization", ""), request.path, gateway.api_key,
                        gateway.management_key, now=gateway.legacy_now, forced=forced)


def _forbidden(gateway: Gateway) -> ApiError:
    """The 403 a workspace without the Batch API gets."""
    return flat("forbidden", "batch_api_feature_flag_disabled",
                message="The Batch API is currently limited to the enabled Statsig admin segment.",
                feature_gate="batch_api")


def create_app(gateway: Gateway | None = None, **gateway_options: Any) -> Flask:
    """Build the Flask app serving ``gateway`` (or a new one built from the options)."""
    if gateway is None:
        gateway = Gateway(**gateway_options)
    app = Flask(__name__)
    app.config["GATEWAY"] = gateway
    app.json.sort_keys = False

    @app.before_request
    def authenticate():
        """Give the request an id, and refuse it without the API key (or the Batch API)."""
        g.request_id = request_id()
        reason = _auth_failure(gateway)
        if reason:
            raise flat("unauthorised", reason)
        g.workspace_id = gateway.workspace_id
        if not gateway.batches_enabled and request.path.startswith("/v1/"):
            raise _forbidden(gateway)

    @app.after_request
    def tag(response):
        """Put the request id on every response."""
        response.headers["x-request-id"] = g.get("request_id") or request_id()
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        """Render a refusal as the gateway's JSON error."""
        return jsonify(exc.to_dict()), exc.status, exc.headers

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        """Render werkzeug's errors (404 route, 405, 413...) in the gateway's shapes too."""
        if exc.code == 413:
            refusal = nested(413, "validation_error", reason="payload_too_large")
        elif exc.code == 404:
            refusal = flat("not_found", "route_not_found")
        else:
            refusal = flat("validation_error", (exc.name or "error").lower().replace(" ", "_"), status=exc.code)
        return jsonify(refusal.to_dict()), refusal.status

    @app.post("/v1/files")
    def upload_file():
        """Store an uploaded JSONL file."""
        upload = request.files.get("file")
        purpose = request.form.get("purpose", "")
        if upload is None or not purpose:
            raise flat("validation_error", "multipart_required" if upload is None else "missing_purpose")
        content = upload.read()
        # As the gateway (and the provider behind it) refuse them: an empty file, or lines that are not
        # JSON request objects (the row format: {"custom_id", "method", "url", "body": {"model", ...}}).
        if not content.strip():
            raise nested(400, "validation_error", reason="batch_file_empty")
        if purpose == "batch" and not all(isinstance(row.get("custom_id"), str) for row in file_rows(content)):
            raise nested(400, "validation_error", reason="batch_file_invalid_jsonl",
                         message="every line must be a JSON object with a string custom_id")
        return jsonify(gateway.upload_file(upload.filename or "upload.jsonl", purpose, content))

    @app.get("/v1/files/<path:file_id>/content")
    def file_content(file_id: str):
        """Pass a file's bytes through (no download limit here)."""
        return Response(gateway.file_content(file_id), mimetype="application/jsonl")

    @app.post("/v1/batches")
    def create_batch():
        """Validate and create a batch."""
        if gateway.insufficient_funds:
            raise nested(402, "insufficient_funds", reason="insufficient_funds",
                         message="The wallet cannot cover this batch's reservation.")
        body = request.get_json(silent=True)
        req = validate_create(body, endpoint_exists=lambda i: gateway.endpoints.active(i) is not None,
                              files=gateway.files_view(), allow_inline_webhooks=gateway.allow_inline_webhooks,
                              accept_unknown_files=gateway.accept_unknown_files)
        return jsonify(gateway.create_batch(req, g.request_id))

    @app.get("/v1/batches")
    def list_batches():
        """List batches by update time; ``status`` repeated or ``statuses`` comma-separated."""
        names = request.args.getlist("status") + [
            s for s in request.args.get("statuses", "").split(",") if s.strip()]
        return jsonify(gateway.list_batches(names, clamp_limit(request.args.get("limit"))))

    @app.get("/v1/batches/<batch_id>")
    def retrieve_batch(batch_id: str):
        """Return a batch, with its retrieve faults applied."""
        return jsonify(gateway.retrieve(batch_id))

    @app.post("/v1/batches/<batch_id>/cancel")
    def cancel_batch(batch_id: str):
        """Ask to cancel a batch."""
        return jsonify(gateway.cancel(batch_id))

    @app.get("/v1/batches/<batch_id>/results")
    def batch_results(batch_id: str):
        """Stream the output then the error file as JSONL, once the batch is terminal.

        Not a route of the gateway's source (which serves results as /v1/files/{id}/content of the batch's
        output_file_id and error_file_id): answered only with --results-route, else its 404."""
        if not gateway.results_route:
            raise flat("not_found", "route_not_found")
        batch = gateway.batch(batch_id)
        if batch.status not in TERMINAL_STATUSES:
            raise flat("not_ready", "batch_not_terminal", batch_id=batch_id, batch_status=batch.status)
        files = [f for f in (batch.output_file_id, batch.error_file_id) if f]
        if not files:
            raise flat("not_found", "batch_results_unavailable", batch_id=batch_id)
        wait = gateway.results_limiter.attempt(batch_id)
        if wait is not None:
            raise flat("rate_limit_exceeded", "batch_results_rate_limited", status=429,
                       headers={"Retry-After": str(int(wait + 0.999))}, batch_id=batch_id)
        if gateway.results_unavailable:
            raise flat("gateway_error", "batch_results_temporarily_unavailable", status=503,
                       headers={"Retry-After": "30"}, batch_id=batch_id)
        content = b"".join(gateway.file_content(f) for f in files)
        return Response(content, mimetype="application/x-ndjson")

    register_endpoint_routes(app, gateway)

    @app.get("/_sandbox/batches/<batch_id>")
    def batch_truth(batch_id: str):
        """Return the batch as it really is, no faults applied."""
        return jsonify(gateway.truth(batch_id))

    @app.get("/_sandbox/stats")
    def stats():
        """Return the sandbox's counters."""
        return jsonify(dict(gateway.stats.snapshot(), batches_by_status=gateway.batches_by_status()))

    @app.post("/_sandbox/seed")
    def seed_batches():
        """Put many batches straight into in_progress, ending over a spread of time (population.py)."""
        body = request.get_json(silent=True) or {}
        try:
            count = int(body.get("count", 0))
            lead, spread = float(body.get("lead_s", 30)), float(body.get("spread_s", 6000))
        except (TypeError, ValueError):
            raise validation("invalid_seed", message="count, lead_s and spread_s must be numbers") from None
        if not 0 < count <= population.MAX_SEED or lead < 0 or spread < 0:
            raise validation("invalid_seed", message=f"count must be 1..{population.MAX_SEED}, times >= 0")
        return jsonify({"data": population.seed_open(gateway, count, lead_s=lead, spread_s=spread,
                                                     seed=body.get("seed"))})

    @app.get("/_sandbox/ended")
    def ended():
        """Batches that ended at or after ``since`` (unix seconds), with when."""
        try:
            since = float(request.args.get("since", 0))
        except ValueError:
            raise validation("invalid_since", message="since must be unix seconds") from None
        return jsonify({"data": population.ended_since(gateway, since)})

    @app.put("/_sandbox/auth-fault")
    def auth_fault():
        """Refuse the next ``count`` /v1 calls with 401 ``reason`` (the gateway's transient ones)."""
        body = request.get_json(silent=True) or {}
        reason, count = body.get("reason"), body.get("count", 1)
        if not isinstance(reason, (str, type(None))) or not isinstance(count, int) or not 0 <= count <= 1000:
            raise validation("invalid_auth_fault", message="reason: string or null; count: 0..1000")
        gateway.set_auth_fault(reason, count)
        return jsonify({"ok": True})

    @app.post("/_sandbox/reset-stats")
    def reset_stats():
        """Zero the counters (batches are kept)."""
        gateway.stats.reset()
        return jsonify({"ok": True})

    return app
