"""Arguments the SDK refuses before sending anything: ids, create-batch bodies, filters.

Every refusal is an ``InvalidRequestError`` with ``status`` None, ``code`` "validation_error"
and a ``reason`` naming the rule, so callers handle it like the gateway's own 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import quote

from ..errors import InvalidRequestError

INPUT_SOURCES = ("input_file_id", "prompts", "items", "requests")
MAX_ID_CHARS = 512


def refuse(message: str, reason: str) -> NoReturn:
    """Raise the client-side refusal of a call."""
    raise InvalidRequestError(message, code="validation_error", reason=reason)


def segment(value: Any, name: str) -> str:
    """Return ``value`` escaped as one URL path segment, refusing what could not be an id.

    Dot segments are refused because URL normalisation would walk up a level, and a
    slash because an id never has one (escaping it would still name another object).
    """
    if not isinstance(value, str) or not value.strip():
        refuse(f"{name} must be a non-empty string", "invalid_id")
    if value in (".", "..") or "/" in value or len(value) > MAX_ID_CHARS:
        refuse(f"{name} is not a valid id: {value[:40]!r}", "invalid_id")
    return quote(value, safe="")


def file_segment(value: Any, name: str) -> str:
    """Return a file id escaped as one URL path segment; unlike ``segment`` it may hold slashes
    (Google's output files are names such as ``files/abc``), escaped as %2F, never a dot segment."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_CHARS:
        refuse(f"{name} must be a non-empty string of at most {MAX_ID_CHARS} characters", "invalid_id")
    if any(part in ("", ".", "..") for part in value.split("/")):
        refuse(f"{name} is not a valid id: {value[:40]!r}", "invalid_id")
    return quote(value, safe="")


def query_params(filters: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Flatten filters into query pairs: lists repeat the key, None is dropped."""
    pairs = []
    for key, value in filters.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        pairs.extend((key, query_value(v)) for v in values if v is not None)
    return pairs


def query_value(value: Any) -> str:
    """Render one query value the way the gateway reads booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_events(events: Any, name: str) -> list[str] | None:
    """Return ``events`` as a list of names, None when not given; refuse anything else."""
    if events is None:
        return None
    if isinstance(events, str) or not isinstance(events, (list, tuple)):
        refuse(f"{name} must be a list of event names", "invalid_events")
    if not all(isinstance(e, str) and e.strip() for e in events):
        refuse(f"{name} must contain only non-empty strings", "invalid_events")
    return list(events)


def _endpoint_id_of(webhook: Mapping[str, Any]) -> Any:
    """Return the endpoint id a webhook object names (the gateway reads both spellings)."""
    return webhook.get("endpoint_id", webhook.get("endpointId"))


def validate_batch_request(request: Mapping[str, Any]) -> None:
    """Raise ``InvalidRequestError`` when a create-batch body would certainly be refused.

    Batch webhooks must name a managed endpoint (``webhook: {"endpoint_id": "we_..."}``
    or ``webhook_endpoint_id``); an inline ``{url, secret}`` webhook is refused here as the
    gateway refuses it (reason ``batch_webhook_endpoint_required``).
    """
    if not isinstance(request, Mapping):
        refuse("request must be a mapping", "invalid_json")
    endpoint = request.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint.strip():
        refuse("request.endpoint is required", "batch_endpoint_required")
    sources = [name for name in INPUT_SOURCES if request.get(name) is not None]
    if len(sources) != 1:
        found = ", ".join(sources) or "none"
        refuse(f"give exactly one of {', '.join(INPUT_SOURCES)} (got {found})", "invalid_input_source")
    top_level = request.get("webhook_endpoint_id")
    if top_level is not None and (not isinstance(top_level, str) or not top_level.strip()):
        refuse("request.webhook_endpoint_id must be a non-empty string", "invalid_batch_webhook")
    webhook = request.get("webhook")
    if webhook is None:
        return
    if not isinstance(webhook, Mapping):
        refuse("request.webhook must be an object naming a webhook endpoint", "invalid_batch_webhook")
    endpoint_id = _endpoint_id_of(webhook)
    if endpoint_id is None:
        # Say why, not only what: the URL is configured on the endpoint, never per batch.
        refuse(
            "request.webhook must name a managed webhook endpoint ({'endpoint_id': 'we_...'}) or use "
            "request.webhook_endpoint_id: the gateway refuses inline webhook URLs and secrets; create "
            "an endpoint with create_webhook_endpoint(url) and keep its signing_secret",
            "batch_webhook_endpoint_required",
        )
    if not isinstance(endpoint_id, str) or not endpoint_id.strip():
        refuse("request.webhook.endpoint_id must be a non-empty string", "invalid_batch_webhook")
    if top_level is not None and top_level != endpoint_id:
        refuse("request.webhook.endpoint_id and request.webhook_endpoint_id name different endpoints",
               "invalid_batch_webhook")
    check_events(webhook.get("events"), "request.webhook.events")
