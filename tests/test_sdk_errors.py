"""Every error body shape the gateway answers, mapped onto the exception tree.

The bodies are written from the gateway's source (GitHub phaseoteam/Phaseo, apps/api/src:
``pipeline/before/http.ts`` builds the flat ``{"error": "<code>", ...}`` body; batches.ts,
files.ts and control/webhook-endpoints.ts also answer nested ``{"error": {"type", ...}}``).
Faults a sandbox cannot produce on demand, so ``httpx.MockTransport`` serves them.
"""

from __future__ import annotations

import httpx
import pytest

from aistats_hooks.errors import (
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
from aistats_hooks.sdk import AIStats

KEY = "sk_test_errors_do_not_leak"
BASE = "https://api.phaseo.app/v1"
REQ = "G-01JZ7Q0000000000000000000"


def flat(code: str, status: int, **extra) -> dict:
    """A body as the gateway's ``err(code, payload)`` builds it."""
    body = {"error": code, "request_id": REQ, "status_code": status, "error_type": "user", "error_origin": "user"}
    body.update(extra)
    return body


def answer(status: int, body: dict | None, headers: dict | None = None, call=lambda c: c.retrieve_batch("batch_1")):
    """Return the exception raised when the gateway answers ``status`` with ``body``."""
    def handler(request):
        return httpx.Response(status, json=body, headers=headers or {})

    with AIStats(KEY, BASE, transport=httpx.MockTransport(handler)) as client, pytest.raises(AIStatsError) as caught:
        call(client)
    return caught.value


@pytest.mark.parametrize(
    "status, body, cls, code, reason, message",
    [
        # flat bodies (pipeline/before/http.ts err())
        (401, flat("unauthorised", 401, reason="invalid_api_key"), AuthenticationError, "unauthorised",
         "invalid_api_key", "invalid_api_key"),
        (404, flat("not_found", 404, reason="batch_not_found_or_not_owned"), NotFoundError, "not_found",
         "batch_not_found_or_not_owned", "batch_not_found_or_not_owned"),
        (400, flat("validation_error", 400, reason="batch_webhook_endpoint_required",
                   message="Batch webhooks must use a managed webhook_endpoint_id."),
         InvalidRequestError, "validation_error", "batch_webhook_endpoint_required",
         "Batch webhooks must use a managed webhook_endpoint_id."),
        (400, flat("invalid_json", 400), InvalidRequestError, "invalid_json", None, "invalid_json"),
        (409, flat("not_ready", 409, reason="batch_not_terminal"), ResultsNotReady, "not_ready",
         "batch_not_terminal", "batch_not_terminal"),
        (429, flat("rate_limit_exceeded", 429, reason="batch_results_rate_limited"), RateLimitError,
         "rate_limit_exceeded", "batch_results_rate_limited", "batch_results_rate_limited"),
        (403, {"error": "forbidden", "reason": "batch_api_feature_flag_disabled", "request_id": REQ,
               "message": "The Batch API is currently limited.", "status_code": 403},
         PermissionDeniedError, "forbidden", "batch_api_feature_flag_disabled", "The Batch API is currently limited."),
        (500, {"error": "pipeline_execution_error", "description": "Internal pipeline execution error.",
               "request_id": REQ}, UpstreamUnavailable, "pipeline_execution_error", None,
         "Internal pipeline execution error."),
        # nested bodies (413, 402, 501, 502, 503 and webhook endpoints)
        (413, {"error": {"type": "validation_error", "reason": "batch_body_too_large"}}, InvalidRequestError,
         "validation_error", "batch_body_too_large", "batch_body_too_large"),
        (402, {"error": {"type": "insufficient_funds", "reason": "insufficient_balance",
                         "message": "Unable to reserve the maximum quoted batch cost.", "reserved_nanos": 0}},
         PaymentRequiredError, "insufficient_funds", "insufficient_balance",
         "Unable to reserve the maximum quoted batch cost."),
        (501, {"error": {"type": "not_implemented_yet", "reason": "batch_provider_adapter_not_ready"}},
         NotSupportedError, "not_implemented_yet", "batch_provider_adapter_not_ready",
         "batch_provider_adapter_not_ready"),
        (502, {"error": {"type": "upstream_error", "reason": "batch_file_upload_invalid_response"}},
         UpstreamUnavailable, "upstream_error", "batch_file_upload_invalid_response",
         "batch_file_upload_invalid_response"),
        (400, {"error": {"type": "validation_error", "message": "Invalid webhook endpoint URL.",
                         "details": {"reason": "webhook_url_invalid"}}},
         InvalidRequestError, "validation_error", "webhook_url_invalid", "Invalid webhook endpoint URL."),
        (400, {"error": {"type": "validation_error", "message": "Invalid webhook endpoint payload.",
                         "details": [{"code": "invalid_type", "path": ["url"]}]}},
         InvalidRequestError, "validation_error", None, "Invalid webhook endpoint payload."),
        (404, {"error": {"type": "not_found", "message": "Webhook endpoint not found."}}, NotFoundError,
         "not_found", None, "Webhook endpoint not found."),
        # the older shape: type is the code, code the reason
        (404, {"error": {"message": "no such batch", "type": "invalid_request_error", "code": "batch_not_found"}},
         NotFoundError, "invalid_request_error", "batch_not_found", "no such batch"),
        (409, {"error": {"message": "already completed", "type": "invalid_request_error",
                         "code": "batch_not_cancellable"}},
         ConflictError, "invalid_request_error", "batch_not_cancellable", "already completed"),
    ],
)
def test_body_shapes(status, body, cls, code, reason, message):
    exc = answer(status, body)
    assert type(exc) is cls
    assert (exc.status, exc.code, exc.reason, exc.message) == (status, code, reason, message)
    if "request_id" in body:
        assert exc.request_id == REQ


def test_a_409_on_cancel_is_a_conflict_and_still_an_invalid_request():
    exc = answer(409, flat("validation_error", 409, reason="batch_not_cancellable"),
                 call=lambda c: c.cancel_batch("batch_1"))
    assert type(exc) is ConflictError and isinstance(exc, InvalidRequestError)
    assert not isinstance(exc, ResultsNotReady)


def test_any_409_on_a_results_download_is_results_not_ready():
    exc = answer(409, {"error": "conflict"}, call=lambda c: c.stream_results("batch_1"))
    assert type(exc) is ResultsNotReady and exc.retryable is False


def test_403_is_handled_like_a_refused_key():
    # workers/jobs.py fails a job at once on AuthenticationError: a 403 must take that path.
    exc = answer(403, {"error": "forbidden", "reason": "batch_api_feature_flag_disabled"})
    assert isinstance(exc, AuthenticationError) and not exc.retryable


@pytest.mark.parametrize("cls_status", [402, 501])
def test_payment_and_not_implemented_are_not_retryable(cls_status):
    assert answer(cls_status, {"error": {"type": "x", "reason": "y"}}).retryable is False


def test_503_retry_after_30_and_429_retry_after():
    unavailable = answer(503, {"error": {"type": "gateway_error", "reason": "batch_results_temporarily_unavailable"}},
                         headers={"retry-after": "30"})
    assert type(unavailable) is UpstreamUnavailable and unavailable.retry_after == 30.0 and unavailable.retryable
    limited = answer(429, flat("rate_limit_exceeded", 429), headers={"retry-after": "1234"})
    assert limited.retry_after == 1234.0
    assert answer(500, {"error": "x"}).retry_after is None
    assert answer(404, {"error": "not_found"}, headers={"retry-after": "5"}).retry_after is None


def test_request_id_header_wins_over_body():
    exc = answer(401, flat("unauthorised", 401), headers={"x-request-id": "G-header"})
    assert exc.request_id == "G-header"


def test_str_names_code_reason_and_request_id_once():
    exc = answer(404, flat("not_found", 404, reason="batch_not_found_or_not_owned"))
    text = str(exc)
    assert text.count("batch_not_found_or_not_owned") == 1  # the message is the reason: not repeated
    assert "status=404" in text and "code=not_found" in text and f"request_id={REQ}" in text


def test_key_echoed_in_any_field_is_scrubbed():
    body = {"error": KEY, "reason": f"bad {KEY}", "message": f"key {KEY}", "request_id": KEY}
    exc = answer(401, body)
    for value in (exc.message, exc.code, exc.reason, exc.request_id, str(exc), repr(exc)):
        assert KEY not in value
    nested = answer(400, {"error": {"type": KEY, "message": "m", "details": {"reason": KEY * 100}}})
    assert KEY not in str(nested) and len(nested.reason) <= 200


def test_huge_error_body_is_not_read_whole():
    body = {"error": "validation_error", "reason": "r", "padding": "x" * 1_000_000}
    exc = answer(400, body, call=lambda c: c.download_file("file_1", "/nonexistent/never-written"))
    # The body was cut at 64 KiB: no JSON, so the reason phrase stands in.
    assert type(exc) is InvalidRequestError and exc.message == "Bad Request"
