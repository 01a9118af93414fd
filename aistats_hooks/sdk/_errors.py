"""Turn a gateway error answer into one exception of ``aistats_hooks.errors``.

The gateway answers errors in three shapes, all read here:

- flat (most routes): ``{"error": "<code>", "reason", "message"?, "request_id", "status_code", ...}``;
- nested (413, 402, 501, 502, webhook endpoints): ``{"error": {"type", "reason" | "message",
  "details"?}}``, where a validation ``details.reason`` (e.g. ``webhook_url_invalid``) is the reason;
- older (and our first sandbox): ``{"error": {"message", "type", "code"}}``; ``type`` is read
  as the code and ``code`` as the reason.

Pure functions of (status, headers, body bytes): the client calls them at its one boundary.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any

from ..errors import (
    AIStatsError,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    NotSupportedError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ResultsNotReady,
    UpstreamUnavailable,
)

MAX_MESSAGE_CHARS = 500
MAX_FIELD_CHARS = 200
# An error body is small; more than this is not an error body worth reading.
MAX_ERROR_BODY_BYTES = 64 * 1024

_STATUS_ERRORS: dict[int, type[AIStatsError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidRequestError,
    422: InvalidRequestError,
    429: RateLimitError,
    501: NotSupportedError,
}

# 401 reasons that are the gateway's own passing faults, not a refused key (pipeline/before/auth.ts): its key
# lookup failed (db_error) or its pepper is not configured. Retried with backoff as a 5xx is.
TRANSIENT_AUTH_REASONS = frozenset({"db_error", "server_misconfig_missing_pepper"})
# What to do about a refused key, said in the error (the reason alone is terse).
AUTH_HINTS = {
    "legacy_key_prefix_retired": "aistats_v1_sk_ keys stopped working on 2027-01-01: create a phaseo_v1_sk_... key",
    "management_key_required": "this route takes only a phaseo_v1_mk_... management key (AISTATS_MANAGEMENT_KEY)",
    "management_key_not_valid_for_gateway": "a management key cannot call the gateway: use AISTATS_API_KEY",
}


def retry_after_seconds(value: str | None) -> float | None:
    """Parse ``Retry-After`` (delta-seconds or HTTP-date) into seconds, or None."""
    value = (value or "").strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:  # "-0000": UTC without a claimed zone, not local time
            when = when.replace(tzinfo=timezone.utc)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _text(value: Any) -> str | None:
    """Return ``value`` when it is a non-blank string, else None."""
    return value if isinstance(value, str) and value.strip() else None


def parse_error_body(content: bytes) -> dict[str, str | None]:
    """Read code, reason, message and request id from an error body of any known shape."""
    try:
        body = json.loads(content)
    except ValueError:  # includes UnicodeDecodeError
        body = None
    if not isinstance(body, dict):
        return {"code": None, "reason": None, "message": None, "request_id": None}
    error = body.get("error")
    if isinstance(error, dict):
        details = error.get("details")
        detail_reason = _text(details.get("reason")) if isinstance(details, dict) else None
        code = _text(error.get("type")) or _text(error.get("code"))
        legacy_reason = _text(error.get("code")) if _text(error.get("type")) else None
        reason = detail_reason or _text(error.get("reason")) or legacy_reason
        message = _text(error.get("message")) or _text(body.get("message"))
        request_id = _text(error.get("request_id")) or _text(body.get("request_id"))
    else:
        code = _text(error)
        reason = _text(body.get("reason"))
        message = _text(body.get("message")) or _text(body.get("description"))
        request_id = _text(body.get("request_id"))
    return {"code": code, "reason": reason, "message": message or reason or code, "request_id": request_id}


def error_class(status: int, code: str | None, reason: str | None, *, results: bool) -> type[AIStatsError]:
    """Pick the exception class of an answer; ``results`` marks a results or file download."""
    if status == 401 and reason in TRANSIENT_AUTH_REASONS:
        return UpstreamUnavailable
    if status == 409 and (results or code == "not_ready" or (reason or "").endswith("not_ready")):
        return ResultsNotReady
    if status in _STATUS_ERRORS:
        return _STATUS_ERRORS[status]
    if status >= 500:
        return UpstreamUnavailable
    if 400 <= status < 500 and code in ("validation_error", "invalid_json", "invalid_request_error"):
        return InvalidRequestError
    return AIStatsError


def translate(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    reason_phrase: str = "",
    scrub: Callable[[str], str] = str,
    results: bool = False,
) -> AIStatsError:
    """Build the exception for a non-2xx answer; every text passes through ``scrub``."""
    fields = parse_error_body(content[:MAX_ERROR_BODY_BYTES])
    request_id = headers.get("x-request-id") or headers.get("request-id") or fields["request_id"]
    message = fields["message"] or reason_phrase or f"HTTP {status}"
    if status == 401 and fields["reason"] in AUTH_HINTS:
        message = f"{fields['reason']}: {AUTH_HINTS[fields['reason']]}"
    cls = error_class(status, fields["code"], fields["reason"], results=results)
    retry_after = retry_after_seconds(headers.get("retry-after")) if cls.retryable else None

    def clean(value: str | None, limit: int = MAX_FIELD_CHARS) -> str | None:
        # Scrub before cutting: a cut could leave a prefix of a secret that no longer matches.
        return scrub(value)[:limit] if value else None

    return cls(
        clean(message, MAX_MESSAGE_CHARS) or "",
        status=status,
        request_id=clean(request_id),
        code=clean(fields["code"]),
        reason=clean(fields["reason"]),
        retry_after=retry_after,
    )
