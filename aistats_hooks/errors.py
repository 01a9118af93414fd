"""The one exception tree of aistats-hooks.

Every error the project raises on purpose derives from ``HooksError``, so a
caller can catch the whole family at one boundary::

    HooksError
    ├── ConfigError            a setting is missing or malformed (exit 2 at start)
    ├── SignatureError         a webhook failed verification (``reason`` says why)
    ├── PayloadError           a webhook body is not a usable event (HTTP 400)
    ├── StoreUnavailable       Redis did not answer (HTTP 503; the gateway retries)
    └── AIStatsError           the upstream gateway answered with an error
        ├── AuthenticationError    401 / 403: fail fast, never retried
        ├── NotFoundError          404: the batch is unknown upstream
        ├── InvalidRequestError    400 / 409 / 422
        ├── RateLimitError         429, ``retry_after`` seconds when given   (retryable)
        └── UpstreamUnavailable    5xx, timeouts, connection errors          (retryable)
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


class AIStatsError(HooksError):
    """The AI Stats gateway answered with an error, or could not be reached."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.request_id = request_id
        super().__init__(message)

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " ".join(parts)


class AuthenticationError(AIStatsError):
    """The API key was refused (401 or 403)."""


class NotFoundError(AIStatsError):
    """The object does not exist upstream (404)."""


class InvalidRequestError(AIStatsError):
    """The gateway rejected the request as invalid (400, 409, 422)."""


class RateLimitError(AIStatsError):
    """The gateway is rate limiting us (429); wait ``retry_after`` seconds."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class UpstreamUnavailable(AIStatsError):
    """A 5xx answer, a timeout or a connection error: worth retrying."""

    retryable = True
