"""Validation of batch creation, in the gateway's order and with its refusals."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .batch import OUTCOMES
from .errors import ApiError, flat, validation
from .faults import parse_fault_names

INPUT_SOURCES = ("input_file_id", "prompts", "items", "requests")
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
ENDPOINTS = {
    "responses": "/v1/responses", "chat/completions": "/v1/chat/completions", "messages": "/v1/messages",
    "embeddings": "/v1/embeddings", "generatecontent": "/v1/generateContent",
}
MAX_METADATA = 16
# Subscribed events when neither the batch nor the endpoint names any.
DEFAULT_EVENTS = ("batch.completed", "batch.failed", "batch.cancelled")


def invalid(message: str, code: str) -> ApiError:
    """Return a 400 validation_error with ``code`` as its reason (``message`` kept for humans)."""
    return validation(code, message=message)


@dataclass
class CreateRequest:
    """A validated POST /v1/batches body."""

    endpoint: str
    source: str
    input_file_id: str | None
    rows: list[dict[str, Any]]
    completion_window: str
    session_id: str | None
    model: str | None
    metadata: dict[str, Any] | None
    webhook_endpoint_id: str | None
    webhook_events: list[str] | None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    outcome: str | None = None
    duration: float | None = None
    faults: frozenset[str] = field(default_factory=frozenset)
    # True for an unknown input file accepted under the lenient knob: the size is made up.
    made_up_input: bool = False


def normalize_endpoint(value: Any) -> str | None:
    """Map ``responses``, ``/v1/responses`` (…) to the gateway's endpoint, or None if unsupported."""
    if not isinstance(value, str) or not value.strip():
        return None
    path = value.strip().split("?", 1)[0].rstrip("/").lower()
    path = path[3:] if path.startswith("/v1") else path
    return ENDPOINTS.get(path.lstrip("/"))


_PHASES = ("created", "status_changed", "progress", "completed", "failed", "cancelled", "expired")


def normalize_batch_events(events: Any) -> list[str] | None:
    """A batch's webhook events as core/async-notifications.ts parseAsyncWebhookConfig keeps them.

    Names are trimmed and lower-cased (``canceled`` -> ``cancelled``); a bare phase becomes ``job.<phase>``;
    ``job.*``/``batch.*`` of a known phase are kept; anything else (unknown names, non-strings) is dropped.
    A non-array, or a non-empty list of which nothing is left, is ``invalid_batch_webhook``."""
    if events is None:
        return None
    if not isinstance(events, list):
        raise validation("invalid_batch_webhook")
    kept: list[str] = []
    for entry in events:
        text = entry.strip().lower() if isinstance(entry, str) else ""
        text = "cancelled" if text == "canceled" else (text[:-9] + ".cancelled" if text.endswith(".canceled") else text)
        if text in _PHASES:
            text = "job." + text
        family, _, phase = text.partition(".")
        if family in ("job", "batch") and phase in _PHASES and text not in kept:
            kept.append(text)
    if events and not kept:
        raise validation("invalid_batch_webhook")
    return kept or None


def _webhook(body: dict, allow_inline: bool) -> tuple[str | None, list[str] | None, str | None, str | None]:
    """Return (endpoint id, events, inline url, inline secret) from ``webhook``/``webhook_endpoint_id``."""
    raw = body.get("webhook")
    if raw is not None and not isinstance(raw, dict):
        raise validation("invalid_batch_webhook")
    hook = raw if isinstance(raw, dict) else (
        {"endpoint_id": body["webhook_endpoint_id"]}
        if isinstance(body.get("webhook_endpoint_id"), str) and body["webhook_endpoint_id"].strip() else None)
    if hook is None:
        return None, None, None, None
    endpoint_id = hook.get("endpoint_id") or hook.get("endpointId")
    events = normalize_batch_events(hook.get("events"))
    if isinstance(endpoint_id, str) and endpoint_id.strip():
        return endpoint_id.strip(), events or None, None, None
    if not allow_inline:
        raise validation(
            "batch_webhook_endpoint_required",
            message="Batch webhooks must use a managed webhook_endpoint_id so the signing secret stays "
                    "encrypted and rotatable.")
    url = hook.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or not parts.hostname or not (
            parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOCAL_HOSTS)):
        raise validation("invalid_batch_webhook")
    secret = hook.get("secret") if isinstance(hook.get("secret"), str) and hook.get("secret") else None
    return None, events or None, url, secret


def _steering(metadata: dict | None) -> tuple[str | None, float | None, frozenset[str]]:
    """Read the sandbox_* metadata keys that steer a batch."""
    if not metadata:
        return None, None, frozenset()
    outcome = metadata.get("sandbox_outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise invalid(f"sandbox_outcome must be one of {', '.join(OUTCOMES)}", "invalid_batch_metadata")
    duration = metadata.get("sandbox_duration_s")
    if duration is not None:
        try:
            duration = float(duration)
        except (TypeError, ValueError):
            raise invalid("sandbox_duration_s must be a number of seconds", "invalid_batch_metadata") from None
        if not 0 < duration < 10**9:
            raise invalid("sandbox_duration_s must be positive", "invalid_batch_metadata")
    try:
        faults = parse_fault_names(metadata.get("sandbox_faults"))
    except (ValueError, TypeError) as exc:
        raise invalid(f"sandbox_faults: {exc}", "invalid_batch_metadata") from None
    return outcome, duration, faults


def file_rows(content: bytes) -> list[dict[str, Any]]:
    """Parse an uploaded JSONL file's request rows (a line that is not an object counts as ``{}``)."""
    rows = []
    for line in content.splitlines():
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError:
                row = {}
            rows.append(row if isinstance(row, dict) else {})
    return rows


def validate_create(body: Any, *, endpoint_exists: Callable[[str], bool] = lambda _: True,
                    files: Mapping[str, dict[str, Any]] | None = None, allow_inline_webhooks: bool = False,
                    accept_unknown_files: bool = True) -> CreateRequest:
    """Check a POST /v1/batches body like the gateway does, or raise its refusal."""
    if not isinstance(body, dict):
        raise flat("invalid_json")
    endpoint_id, events, url, secret = _webhook(body, allow_inline_webhooks)
    if endpoint_id is not None and not endpoint_exists(endpoint_id):
        raise validation("batch_webhook_endpoint_not_found_or_inactive",
                         message="The webhook_endpoint_id must reference an active webhook endpoint in this workspace.",
                         webhook_endpoint_id=endpoint_id)
    given = [name for name in INPUT_SOURCES if body.get(name) is not None]
    if len(given) != 1:
        raise validation("batch_input_required" if not given else "batch_input_ambiguous")
    source = given[0]
    file_id, made_up, rows = None, False, []
    if source == "input_file_id":
        file_id = body["input_file_id"]
        if not isinstance(file_id, str) or not file_id.strip():
            raise validation("batch_input_required")
        known = (files or {}).get(file_id)
        if known is None and not accept_unknown_files:
            raise flat("not_found", "batch_input_file_not_found_or_not_owned", file_id=file_id)
        made_up = known is None
        rows = [] if known is None else list(known["rows"])
        if known is not None and not rows:
            raise validation("batch_input_file_empty", file_id=file_id)
    else:
        items = body[source]
        if not isinstance(items, list) or not items:
            raise validation(f"invalid_{source}")
        rows = [item if isinstance(item, dict) else {"body": {"input": item}} for item in items]
    window = body.get("completion_window")
    window = window.strip() if isinstance(window, str) and window.strip() else "24h"
    if window != "24h":
        raise validation("openai_batch_completion_window_unsupported",
                         message="OpenAI Batch currently supports only a 24h completion window.")
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > MAX_METADATA or any(
            len(k) > 64 or not isinstance(v, str) or len(v) > 512 for k, v in metadata.items())):
        raise validation("invalid_batch_metadata")
    endpoint = "/v1/responses" if body.get("endpoint") in (None, "") else normalize_endpoint(body["endpoint"])
    if endpoint is None:
        raise validation("batch_endpoint_unsupported")
    outcome, duration, faults = _steering(metadata)
    models = [r.get("body", {}).get("model") for r in rows if isinstance(r.get("body"), dict)]
    # A row's own body.model wins; the create body's `model` is inherited by rows that name none.
    model = next((m for m in models if isinstance(m, str) and m), None) or (
        body.get("model") if isinstance(body.get("model"), str) else None)
    session = body.get("session_id")
    return CreateRequest(
        endpoint=endpoint, source=source, input_file_id=file_id, rows=rows, completion_window=window,
        session_id=session if isinstance(session, str) and session else None,
        model=model or (metadata or {}).get("model"), metadata=metadata,
        webhook_endpoint_id=endpoint_id, webhook_events=events, webhook_url=url, webhook_secret=secret,
        outcome=outcome, duration=duration, faults=faults, made_up_input=made_up)
