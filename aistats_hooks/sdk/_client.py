"""The one boundary between the SDK and the network: transport, auth, requests, errors.

Every call leaves through ``_request`` (a JSON object back) or ``_open_stream`` /
``_iter_bytes`` (a streamed body), and every failure leaves as an ``AIStatsError`` built by
``_errors.translate``; the API key is scrubbed from every message and never appears in a repr.
Pass ``transport=httpx.MockTransport(handler)`` to test without a network.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from .. import __version__
from ..config import DEFAULT_BASE_URL, LEGACY_KEY_PREFIX
from ..errors import AIStatsError, UpstreamUnavailable
from ._errors import MAX_ERROR_BODY_BYTES, translate

USER_AGENT = f"aistats-hooks/{__version__} httpx/{httpx.__version__}"
STREAM_CHUNK_BYTES = 64 * 1024
log = logging.getLogger(__name__)
_warned_legacy = False


def _warn_legacy_key(api_key: str) -> None:
    """One log line per process when the key has the prefix the gateway retires (never the key itself)."""
    global _warned_legacy
    if api_key.startswith(LEGACY_KEY_PREFIX) and not _warned_legacy:
        _warned_legacy = True
        log.warning("the API key starts with %s: the gateway refuses such keys from 2027-01-01 "
                    "(401 legacy_key_prefix_retired); create a phaseo_v1_sk_... key", LEGACY_KEY_PREFIX)


class BaseClient:
    """A pooled ``httpx.Client`` with the gateway's auth, and the SDK's error boundary."""

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
        _warn_legacy_key(api_key)
        self.base_url = base_url.rstrip("/")
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
        return f"<{type(self).__name__} base_url={self.base_url!r}>"

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    # -- JSON calls ------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Send one request and return its JSON object, or raise an ``AIStatsError``."""
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.RequestError as exc:
            raise self._transport_error(exc) from None  # the cause is summarised, scrubbed, in the message
        if not response.is_success:
            raise self._answer_error(response, response.content)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            # A success without a JSON object is a broken proxy or a cut answer: worth a retry.
            request_id = response.headers.get("x-request-id") or response.headers.get("request-id")
            raise UpstreamUnavailable(
                "invalid JSON from gateway", status=response.status_code,
                request_id=self._scrub(request_id)[:200] if request_id else None,
            )
        return body

    # -- streamed calls --------------------------------------------------

    def _open_stream(self, path: str, *, results: bool, accept: str) -> httpx.Response:
        """GET ``path`` with its body left unread; raise the mapped error unless 2xx.

        The request is sent now, so a 409/404/429 surfaces at the call, not at the first
        row. ``results`` marks a results download (a 409 is ``ResultsNotReady``).
        The caller must close the returned response.
        """
        request = self._client.build_request("GET", path, headers={"Accept": accept})
        try:
            response = self._client.send(request, stream=True)
        except httpx.RequestError as exc:
            raise self._transport_error(exc) from None
        if response.is_success:
            return response
        try:
            content = self._read_bounded(response)
        finally:
            response.close()
        raise self._answer_error(response, content, results=results)

    def _iter_bytes(self, response: httpx.Response) -> Iterator[bytes]:
        """Yield a streamed body's chunks; a failure mid-body becomes ``UpstreamUnavailable``."""
        try:
            yield from response.iter_bytes(STREAM_CHUNK_BYTES)
        except httpx.RequestError as exc:
            raise self._transport_error(exc) from None

    def _read_bounded(self, response: httpx.Response) -> bytes:
        """Read at most ``MAX_ERROR_BODY_BYTES`` of an error body."""
        content = b""
        try:
            for chunk in response.iter_bytes():
                content += chunk
                if len(content) >= MAX_ERROR_BODY_BYTES:
                    break
        except httpx.RequestError:
            pass  # the status already says what failed; a cut body only loses detail
        return content[:MAX_ERROR_BODY_BYTES]

    # -- errors ----------------------------------------------------------

    def _answer_error(self, response: httpx.Response, content: bytes, *, results: bool = False) -> AIStatsError:
        """Translate a non-2xx answer into the project's errors."""
        return translate(
            response.status_code, response.headers, content,
            reason_phrase=response.reason_phrase, scrub=self._scrub, results=results,
        )

    def _transport_error(self, exc: httpx.RequestError) -> AIStatsError:
        """Translate an httpx failure (no answer, or a cut one) into ``UpstreamUnavailable``."""
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "could not reach gateway"
        detail = str(exc) or type(exc).__name__
        return UpstreamUnavailable(self._scrub(f"{kind}: {type(exc).__name__}: {detail}"))

    def _scrub(self, text: str) -> str:
        """Remove the API key from text bound for a message, whatever its source."""
        return text.replace(self._api_key, "[redacted]")
