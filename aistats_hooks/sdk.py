"""A small client of the AI Stats (Phaseo) gateway, on one pooled ``httpx.Client``.

Every failure leaves through ``_error`` as an ``AIStatsError`` subclass from
``aistats_hooks.errors``; the API key never appears in a repr or a message.
Pass ``transport=httpx.MockTransport(handler)`` to test without a network.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Mapping
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import IO, Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx

from . import __version__
from .errors import (
    AIStatsError,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    UpstreamUnavailable,
)

DEFAULT_BASE_URL = "https://api.phaseo.app/v1"
USER_AGENT = f"aistats-hooks/{__version__} httpx/{httpx.__version__}"
ASYNC_JOB_KINDS = ("batch", "video")
INPUT_SOURCES = ("input_file_id", "prompts", "items", "requests")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
MAX_MESSAGE_CHARS = 500

_STATUS_ERRORS: dict[int, type[AIStatsError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    409: InvalidRequestError,
    422: InvalidRequestError,
}


def _segment(value: str, name: str) -> str:
    """Return ``value`` escaped as one URL path segment, refusing empty and dot ids."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    if value in (".", ".."):
        # quote() leaves dots alone and URL normalisation would walk up a level.
        raise ValueError(f"{name} may not be {value!r}")
    return quote(value, safe="")


def _query_params(filters: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Flatten filters into query pairs: lists repeat the key, None is dropped."""
    pairs = []
    for key, value in filters.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        pairs.extend((key, _query_value(v)) for v in values if v is not None)
    return pairs


def _query_value(value: Any) -> str:
    """Render one query value the way the gateway reads booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_webhook_url(url: Any) -> None:
    """Raise ValueError unless ``url`` is https, or http to a loopback host."""
    if not isinstance(url, str) or not url:
        raise ValueError("webhook.url must be a non-empty string")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise ValueError(f"webhook.url is not a valid URL: {url!r}") from None
    if not host:
        raise ValueError(f"webhook.url has no host: {url!r}")
    if parts.scheme == "https" or (parts.scheme == "http" and host in LOCAL_HOSTS):
        return
    raise ValueError(f"webhook.url must use https (http only for localhost, 127.0.0.1 or [::1]): {url!r}")


def validate_batch_request(request: Mapping[str, Any]) -> None:
    """Raise ValueError when a create-batch body would certainly be refused."""
    if not isinstance(request, Mapping):
        raise ValueError("request must be a mapping")
    endpoint = request.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise ValueError("request.endpoint is required")
    sources = [name for name in INPUT_SOURCES if request.get(name) is not None]
    if len(sources) != 1:
        found = ", ".join(sources) or "none"
        raise ValueError(f"give exactly one of {', '.join(INPUT_SOURCES)} (got {found})")
    webhook = request.get("webhook")
    if webhook is not None:
        if not isinstance(webhook, Mapping):
            raise ValueError("request.webhook must be an object")
        _check_webhook_url(webhook.get("url"))


def _websocket_url(base_url: str, kind: str, job_id: str, interval_ms: int | None, close_on_terminal: bool | None) -> str:
    """Build the lifecycle-stream URL of an async job."""
    if kind not in ASYNC_JOB_KINDS:
        raise ValueError(f"kind must be one of {', '.join(ASYNC_JOB_KINDS)}, got {kind!r}")
    job = _segment(job_id, "job id")
    query = []
    if interval_ms is not None:
        if isinstance(interval_ms, bool) or not isinstance(interval_ms, int) or not 1000 <= interval_ms <= 10000:
            raise ValueError(f"interval_ms must be a whole number from 1000 to 10000, got {interval_ms!r}")
        query.append(("interval_ms", str(interval_ms)))
    if close_on_terminal is not None:
        query.append(("close_on_terminal", _query_value(bool(close_on_terminal))))
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = f"{parts.path.rstrip('/')}/async/{kind}/{job}/ws"
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


def _retry_after(value: str | None) -> float | None:
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


def _error_body(response: httpx.Response) -> dict[str, Any]:
    """Return the JSON object of an error response, or an empty dict."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_details(response: httpx.Response) -> tuple[str, str | None]:
    """Return the message and request id an error response carries."""
    body = _error_body(response)
    error = body.get("error")
    nested = error if isinstance(error, dict) else {}
    message = nested.get("message") or (error if isinstance(error, str) else None) or body.get("message")
    if not isinstance(message, str) or not message.strip():
        message = response.reason_phrase or f"HTTP {response.status_code}"
    request_id = (
        response.headers.get("x-request-id")
        or response.headers.get("request-id")
        or body.get("request_id")
        or nested.get("request_id")
    )
    return message, str(request_id)[:200] if request_id else None


class AIStats:
    """A client of the AI Stats gateway: batches, files and lifecycle-stream URLs."""

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float | httpx.Timeout = 20.0,
        transport: httpx.BaseTransport | None = None,
        max_connections: int = 20,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("api_key is required")
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.async_jobs = AsyncJobs(self)
        self._client = httpx.Client(
            base_url=self.base_url + "/",
            headers={
                "Authorization": f"Bearer {api_key}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"<AIStats base_url={self.base_url!r}>"

    def __enter__(self) -> AIStats:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    # -- batches ---------------------------------------------------------

    def create_batch(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Create a batch; raise ValueError before any request when ``request`` is unusable."""
        validate_batch_request(request)
        return self._request("POST", "batches", json=dict(request))

    def retrieve_batch(self, batch_id: str) -> dict[str, Any]:
        """Return the latest batch object."""
        return self._request("GET", f"batches/{_segment(batch_id, 'batch_id')}")

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        """Ask the gateway to cancel a batch (cancellation itself is asynchronous)."""
        return self._request("POST", f"batches/{_segment(batch_id, 'batch_id')}/cancel")

    def list_batches(self, **filters: Any) -> dict[str, Any]:
        """List owned batches; a list filter value becomes a repeated query parameter."""
        return self._request("GET", "batches", params=_query_params(filters))

    # -- files -----------------------------------------------------------

    def upload_file(
        self, file: str | os.PathLike[str] | bytes | IO[bytes], purpose: str = "batch", *, filename: str | None = None
    ) -> dict[str, Any]:
        """Upload a JSONL file (a path, bytes or a binary file object) and return the file object."""
        if isinstance(file, (str, os.PathLike)):
            with open(file, "rb") as handle:
                return self._upload(handle, purpose, filename or os.path.basename(os.fspath(file)))
        if isinstance(file, (bytes, bytearray, memoryview)):
            return self._upload(bytes(file), purpose, filename or "requests.jsonl")
        if isinstance(file, io.TextIOBase) or not hasattr(file, "read"):
            raise ValueError("file must be a path, bytes or a file object opened in binary mode")
        name = getattr(file, "name", None)
        default = os.path.basename(name) if isinstance(name, str) and name else "requests.jsonl"
        return self._upload(file, purpose, filename or default)

    def _upload(self, content: bytes | IO[bytes], purpose: str, filename: str) -> dict[str, Any]:
        """Post one multipart upload."""
        files = {"file": (filename, content, "application/jsonl")}
        return self._request("POST", "files", data={"purpose": purpose}, files=files)

    # -- websockets ------------------------------------------------------

    def get_batch_websocket_url(
        self, batch_id: str, interval_ms: int | None = None, close_on_terminal: bool | None = None
    ) -> str:
        """Return the lifecycle-stream URL of a batch."""
        return _websocket_url(self.base_url, "batch", batch_id, interval_ms, close_on_terminal)

    def get_async_job_websocket_url(
        self, kind: str, job_id: str, interval_ms: int | None = None, close_on_terminal: bool | None = None
    ) -> str:
        """Return the lifecycle-stream URL of an async job of ``kind`` batch or video."""
        return _websocket_url(self.base_url, kind, job_id, interval_ms, close_on_terminal)

    # -- transport -------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Send one request and return its JSON object, or raise an ``AIStatsError``."""
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.RequestError as exc:
            raise self._error(exc) from None  # the cause is summarised, scrubbed, in the message
        if not response.is_success:
            raise self._error(response)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise self._error(response, invalid_json=True)
        return body

    def _error(self, failure: httpx.Response | httpx.RequestError, *, invalid_json: bool = False) -> AIStatsError:
        """Translate a failed response or an httpx exception into the project's errors."""
        if isinstance(failure, httpx.RequestError):
            kind = "timed out" if isinstance(failure, httpx.TimeoutException) else "could not reach gateway"
            detail = str(failure) or type(failure).__name__
            return UpstreamUnavailable(self._scrub(f"{kind}: {type(failure).__name__}: {detail}"))
        status = failure.status_code
        message, request_id = _error_details(failure)
        fields = {"status": status, "request_id": self._scrub(request_id) if request_id else None}
        if invalid_json:
            return UpstreamUnavailable("invalid JSON from gateway", **fields)
        message = self._scrub(message[:MAX_MESSAGE_CHARS])
        if status == 429:
            return RateLimitError(message, retry_after=_retry_after(failure.headers.get("retry-after")), **fields)
        if status >= 500:
            return UpstreamUnavailable(message, **fields)
        return _STATUS_ERRORS.get(status, AIStatsError)(message, **fields)

    def _scrub(self, text: str) -> str:
        """Remove the API key from text bound for a message, whatever its source."""
        return text.replace(self._api_key, "[redacted]")


class AsyncJobs:
    """The ``client.async_jobs`` namespace, mirroring the seed SDK's ``asyncJobs``."""

    def __init__(self, client: AIStats) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<AsyncJobs of {self._client!r}>"

    def websocket_url(
        self, kind: str, job_id: str, interval_ms: int | None = None, close_on_terminal: bool | None = None
    ) -> str:
        """Return the lifecycle-stream URL of an async job of ``kind`` batch or video."""
        return self._client.get_async_job_websocket_url(kind, job_id, interval_ms, close_on_terminal)
