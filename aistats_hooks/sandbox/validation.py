"""Refusals the fake gateway answers with, and validation of batch creation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .batch import OUTCOMES
from .events import DEFAULT_EVENTS, KNOWN_EVENTS
from .faults import parse_fault_names

INPUT_SOURCES = ("input_file_id", "prompts", "items", "requests")
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class ApiError(Exception):
    """A request the gateway refuses: rendered as a JSON error with ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.code = code
        self.type = type
        self.headers = headers or {}
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON error body."""
        return {"error": {"message": self.message, "type": self.type, "code": self.code}}


def invalid(message: str, code: str) -> ApiError:
    """Return a 400 invalid_request_error."""
    return ApiError(400, message, code=code)


@dataclass
class CreateRequest:
    """A validated POST /v1/batches body."""

    endpoint: str
    source: str
    input_file_id: str | None
    inline_total: int | None
    completion_window: str
    session_id: str | None
    model: str | None
    metadata: dict[str, Any] | None
    webhook_url: str | None
    webhook_events: list[str]
    webhook_secret: str | None
    webhook_endpoint_id: str | None
    outcome: str | None
    duration: float | None
    faults: frozenset[str]


def check_webhook_url(url: Any) -> str:
    """Return ``url`` if the gateway would deliver to it, else raise a 400."""
    if not isinstance(url, str) or not url:
        raise invalid("webhook.url must be a non-empty string", "invalid_webhook_url")
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in LOCAL_HOSTS:
        return url
    raise invalid("webhook.url must be https (http only for localhost)", "invalid_webhook_url")


def _optional_str(body: dict, name: str) -> str | None:
    """Return ``body[name]`` when it is a string or absent, else raise a 400."""
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise invalid(f"{name} must be a string", f"invalid_{name}")
    return value


def _webhook(body: dict) -> tuple[str | None, list[str], str | None, str | None]:
    """Validate the webhook block: url, events, secret and endpoint id."""
    endpoint_id = _optional_str(body, "webhook_endpoint_id")
    hook = body.get("webhook")
    if hook is None:
        return None, list(DEFAULT_EVENTS), None, endpoint_id
    if not isinstance(hook, dict):
        raise invalid("webhook must be an object", "invalid_webhook")
    url = check_webhook_url(hook.get("url"))
    events = hook.get("events")
    if events is None or events == []:
        events = list(DEFAULT_EVENTS)
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise invalid("webhook.events must be a list of event names", "invalid_webhook_events")
    unknown = sorted(set(events) - KNOWN_EVENTS)
    if unknown:
        raise invalid(f"unknown webhook event {', '.join(unknown)}", "invalid_webhook_events")
    secret = hook.get("secret")
    if secret is not None and (not isinstance(secret, str) or not secret):
        raise invalid("webhook.secret must be a non-empty string", "invalid_webhook_secret")
    return url, list(events), secret, endpoint_id


def _steering(metadata: dict | None) -> tuple[str | None, float | None, frozenset[str]]:
    """Read the sandbox_* metadata keys that steer a batch."""
    if not metadata:
        return None, None, frozenset()
    outcome = metadata.get("sandbox_outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise invalid(f"sandbox_outcome must be one of {', '.join(OUTCOMES)}", "invalid_metadata")
    duration = metadata.get("sandbox_duration_s")
    if duration is not None:
        try:
            duration = float(duration)
        except (TypeError, ValueError):
            raise invalid("sandbox_duration_s must be a number of seconds", "invalid_metadata") from None
        if not 0 < duration < 10**9:
            raise invalid("sandbox_duration_s must be positive", "invalid_metadata")
    try:
        faults = parse_fault_names(metadata.get("sandbox_faults"))
    except (ValueError, TypeError) as exc:
        raise invalid(f"sandbox_faults: {exc}", "invalid_metadata") from None
    return outcome, duration, faults


def validate_create(body: Any) -> CreateRequest:
    """Check a POST /v1/batches body like the gateway does, or raise a 400."""
    if not isinstance(body, dict):
        raise invalid("request body must be a JSON object", "invalid_json")
    endpoint = body.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise invalid("endpoint is required", "missing_endpoint")
    given = [name for name in INPUT_SOURCES if body.get(name) is not None]
    if len(given) != 1:
        raise invalid(f"exactly one of {', '.join(INPUT_SOURCES)} is required", "invalid_input_source")
    source = given[0]
    inline_total = None
    if source == "input_file_id":
        if not isinstance(body["input_file_id"], str) or not body["input_file_id"]:
            raise invalid("input_file_id must be a non-empty string", "invalid_input_file_id")
    else:
        rows = body[source]
        if not isinstance(rows, list) or not rows:
            raise invalid(f"{source} must be a non-empty list", f"invalid_{source}")
        inline_total = len(rows)
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid("metadata must be an object", "invalid_metadata")
    url, events, secret, endpoint_id = _webhook(body)
    outcome, duration, faults = _steering(metadata)
    path = endpoint.strip()
    return CreateRequest(
        endpoint=path if path.startswith("/v1/") else "/v1/" + path.lstrip("/"),
        source=source,
        input_file_id=body.get("input_file_id"),
        inline_total=inline_total,
        completion_window=_optional_str(body, "completion_window") or "24h",
        session_id=_optional_str(body, "session_id"),
        model=_optional_str(body, "model") or (metadata or {}).get("model"),
        metadata=metadata,
        webhook_url=url,
        webhook_events=events,
        webhook_secret=secret,
        webhook_endpoint_id=endpoint_id,
        outcome=outcome,
        duration=duration,
        faults=faults,
    )
