"""HTTP routes of the managed webhook endpoints (/v1/webhook-endpoints); the gateway has no test route."""

from __future__ import annotations

from flask import Flask, jsonify, request

from .errors import validation


def _int(raw: str | None, default: int) -> int:
    try:
        return int(float(raw)) if raw not in (None, "") else default
    except ValueError:
        return default


def register_endpoint_routes(app: Flask, gateway) -> None:
    """Add the webhook-endpoint routes to ``app`` for ``gateway``."""
    endpoints = gateway.endpoints

    @app.get("/v1/webhook-endpoints")
    def list_endpoints():
        """List endpoints, newest first (limit 1-100, offset, include_deleted)."""
        limit = max(1, min(100, _int(request.args.get("limit"), 100)))
        rows = endpoints.list(limit, max(0, _int(request.args.get("offset"), 0)),
                              request.args.get("include_deleted") == "true")
        return jsonify({"object": "list", "data": [e.public() for e in rows]})

    @app.post("/v1/webhook-endpoints")
    def create_endpoint():
        """Create an endpoint; the answer carries its signing_secret, once."""
        return jsonify(endpoints.create(request.get_json(silent=True)).with_secret()), 201

    @app.get("/v1/webhook-endpoints/<endpoint_id>")
    def get_endpoint(endpoint_id: str):
        return jsonify(endpoints.get(endpoint_id).public())

    @app.patch("/v1/webhook-endpoints/<endpoint_id>")
    def update_endpoint(endpoint_id: str):
        return jsonify(endpoints.update(endpoint_id, request.get_json(silent=True)).public())

    @app.delete("/v1/webhook-endpoints/<endpoint_id>")
    def delete_endpoint(endpoint_id: str):
        return jsonify(endpoints.delete(endpoint_id))

    @app.post("/v1/webhook-endpoints/<endpoint_id>/rotate-secret")
    def rotate_secret(endpoint_id: str):
        """Give the endpoint a new secret; deliveries from now on are signed with it."""
        return jsonify(endpoints.rotate(endpoint_id).with_secret())

    @app.put("/_sandbox/webhook-endpoints/<endpoint_id>/secret")
    def set_secret(endpoint_id: str):
        """Sandbox-only knob: set an endpoint's secret to a known value (tools that pre-share one)."""
        body = request.get_json(silent=True) or {}
        secret = body.get("secret") if isinstance(body, dict) else None
        if not isinstance(secret, str) or not secret:
            raise validation("secret_required")
        endpoints.rotate(endpoint_id, secret)
        return jsonify({"ok": True})
