"""The one exception tree of aistats-hooks.

Every error the project raises on purpose derives from ``HooksError``, so a
caller can catch the whole family at one boundary::

    HooksError
    ├── ConfigError            a setting is missing or malformed (exit 2 at start)
    ├── SignatureError         a webhook failed verification (``reason`` says why)
    ├── PayloadError           a webhook body is not a usable event (HTTP 400)
    ├── StoreUnavailable       Redis did not answer (HTTP 503; the gateway retries)
    ├── BatchLocked            another run held a batch's lock longer than the caller would wait
    └── AIStatsError           the upstream gateway answered with an error, or a call was refused
        │                      before sending (``status`` None); every one carries ``status``,
        │                      ``code`` ("validation_error", "not_found", ...), ``reason``
        │                      ("batch_not_found_or_not_owned", ...), ``request_id``, ``retry_after``
        ├── AuthenticationError    401: the key was refused; fail fast, never retried
        │   └── PermissionDeniedError   403: e.g. batches not enabled for the workspace
        ├── PaymentRequiredError   402: insufficient funds; not retryable
        ├── NotFoundError          404: the batch, file or endpoint is unknown (or not ours)
        ├── InvalidRequestError    400 / 413 / 422, and arguments refused client-side
        │   └── ConflictError          409
        │       └── ResultsNotReady        409 ``not_ready``: results exist once the batch is terminal
        ├── ResultsFormatError     a results line is over-long or not a JSON object
        ├── NotSupportedError      501: the gateway does not offer this (here, for this provider)
        ├── RateLimitError         429, ``retry_after`` seconds when given   (retryable)
        └── UpstreamUnavailable    other 5xx, timeouts, connection errors    (retryable;
                                   ``retry_after`` from a 503's Retry-After)
"""

from __future__ import annotations


class HooksError(Exception):
    """Base class of every error aistats-hooks raises on purpose."""


class ConfigError(HooksError):
    """A setting is missing or malformed."""

    def __init__(self, variable: str, expected: str) -> None:
        self.variable = variable
        self.expected = expected
        super().__init__(f"{variable}: {expected}")


class SignatureError(HooksError):
    """A webhook delivery failed signature verification."""

    REASONS = ("missing_header", "bad_timestamp", "stale", "mismatch", "no_secret")

    def __init__(self, reason: str, message: str = "") -> None:
        self.reason = reason
        super().__init__(message or reason)


class PayloadError(HooksError):
    """A webhook body is not a usable event."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class StoreUnavailable(HooksError):
    """Redis could not be reached or failed mid-operation."""


class BatchLocked(HooksError):
    """Another run held the batch's lock for longer than the caller would wait."""


class AIStatsError(HooksError):
    """The AI Stats gateway answered with an error, or could not be reached."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        code: str | None = None,
        reason: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.request_id = request_id
        self.code = code
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(message)

    def __str__(self) -> str:
        parts = [self.message]
        for name in ("status", "code", "reason", "request_id"):
            value = getattr(self, name)
            # The message often is the reason itself: say it once.
            if value is not None and value != "" and value != self.message:
                parts.append(f"{name}={value}")
        return " ".join(parts)


class AuthenticationError(AIStatsError):
    """The API key was refused (401); a 403 is the subclass ``PermissionDeniedError``."""


class PermissionDeniedError(AuthenticationError):
    """The key is valid but may not do this (403), e.g. batches are not enabled for the workspace.

    A subclass of ``AuthenticationError`` so handling that fails fast on a refused key covers it.
    """


class PaymentRequiredError(AIStatsError):
    """The gateway could not reserve the cost (402, insufficient funds); retrying will not help."""


class NotFoundError(AIStatsError):
    """The object does not exist upstream, or is not owned by this key (404)."""


class InvalidRequestError(AIStatsError):
    """The request was refused as invalid (400, 413, 422), by the gateway or before sending."""


class ConflictError(InvalidRequestError):
    """The object is not in a state that allows this (409)."""


class ResultsNotReady(ConflictError):
    """Results are not available yet (409 ``not_ready``): the batch is not terminal."""


class ResultsFormatError(AIStatsError):
    """A results line is longer than the limit, or is not a JSON object."""


class NotSupportedError(AIStatsError):
    """The gateway does not offer this operation here (501); retrying will not help."""


class RateLimitError(AIStatsError):
    """The gateway is rate limiting us (429); wait ``retry_after`` seconds."""

    retryable = True


class UpstreamUnavailable(AIStatsError):
    """A 5xx answer, a timeout or a connection error: worth retrying (after ``retry_after``)."""

    retryable = True
