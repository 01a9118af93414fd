"""Refusals in the gateway's two error shapes.

Most gateway routes answer a flat body built by its ``err()`` helper:
``{"error": "<code>", "reason": ..., "request_id": ..., "status_code": ...,
"error_type", "error_origin", "generation_id"}``; a few paths (413, 402, 501,
502, and the webhook-endpoint routes) nest ``{"error": {"type", "reason" or
"message", ...}}``.
"""

from __future__ import annotations

from typing import Any

# The gateway's error codes and their HTTP statuses (its before-stage table).
STATUS = {
    "unauthorised": 401,
    "invalid_json": 400,
    "payload_too_large": 413,
    "validation_error": 400,
    "not_found": 404,
    "not_implemented_yet": 501,
    "gateway_error": 500,
    "upstream_error": 502,
    "not_supported": 400,
    "not_ready": 409,
    "key_limit_exceeded": 429,
    "insufficient_funds": 402,
    "forbidden": 403,
    "rate_limit_exceeded": 429,
}


class ApiError(Exception):
    """A request the sandbox refuses, rendered as the gateway would render it."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}
        super().__init__(str(body.get("reason") or body.get("error")))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON error body."""
        return self.body


def flat(code: str, reason: str | None = None, *, status: int | None = None,
         headers: dict[str, str] | None = None, **extra: Any) -> ApiError:
    """Return a refusal with the flat body of the gateway's ``err()`` helper."""
    from flask import g, has_request_context  # the request id, when answering a request

    body: dict[str, Any] = {"error": code}
    if reason is not None:
        body["reason"] = reason
    request_id = g.get("request_id") if has_request_context() else None
    if request_id:
        body["request_id"] = request_id
    workspace_id = g.get("workspace_id") if has_request_context() else None
    if workspace_id and code != "unauthorised":
        body["workspace_id"] = workspace_id
    body.update(extra)
    code_status = status or STATUS.get(code, 400)
    body.setdefault("status_code", code_status)
    system = code in ("upstream_error", "gateway_error")
    body.setdefault("error_type", "system" if system else "user")
    body.setdefault("error_origin", {"upstream_error": "upstream", "gateway_error": "gateway"}.get(code, "user"))
    if request_id:
        body.setdefault("generation_id", request_id)
    return ApiError(code_status, body, headers)


def nested(status: int, type: str, *, headers: dict[str, str] | None = None, **fields: Any) -> ApiError:
    """Return a refusal with the nested body ``{"error": {"type": ..., ...}}``."""
    return ApiError(status, {"error": {"type": type, **fields}}, headers)


def validation(reason: str, **extra: Any) -> ApiError:
    """Return the gateway's 400 ``validation_error`` with ``reason``."""
    return flat("validation_error", reason, **extra)


def endpoint_validation(message: str, details: Any = None) -> ApiError:
    """Return the webhook-endpoint routes' 400: nested, with a message and details."""
    return nested(400, "validation_error", message=message, details=details)
