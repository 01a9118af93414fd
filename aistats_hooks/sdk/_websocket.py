"""Lifecycle-stream (websocket) URLs of async jobs.

Part of the SDK's public surface, mirroring the official SDKs' helpers; the service itself
does not use them (it learns of changes by webhook and polling). They only build URLs: no
connection is opened here. Tested in tests/test_sdk.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit, urlunsplit

from ._client import BaseClient
from ._validate import query_value, refuse, segment

if TYPE_CHECKING:
    from . import AIStats

ASYNC_JOB_KINDS = ("batch", "video")


def websocket_url(base_url: str, kind: str, job_id: str, interval_ms: int | None, close_on_terminal: bool | None) -> str:
    """Build the lifecycle-stream URL of an async job."""
    if kind not in ASYNC_JOB_KINDS:
        refuse(f"kind must be one of {', '.join(ASYNC_JOB_KINDS)}, got {kind!r}", "invalid_kind")
    job = segment(job_id, "job id")
    query = []
    if interval_ms is not None:
        if isinstance(interval_ms, bool) or not isinstance(interval_ms, int) or not 1000 <= interval_ms <= 10000:
            refuse(f"interval_ms must be a whole number from 1000 to 10000, got {interval_ms!r}", "invalid_interval")
        query.append(("interval_ms", str(interval_ms)))
    if close_on_terminal is not None:
        query.append(("close_on_terminal", query_value(bool(close_on_terminal))))
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = f"{parts.path.rstrip('/')}/async/{kind}/{job}/ws"
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


class WebsocketMixin(BaseClient):
    """Lifecycle-stream URL helpers (SDK surface only; unused by the service)."""

    def get_batch_websocket_url(
        self, batch_id: str, interval_ms: int | None = None, close_on_terminal: bool | None = None
    ) -> str:
        """Return the lifecycle-stream URL of a batch (a helper for SDK users; unused by the service)."""
        return websocket_url(self.base_url, "batch", batch_id, interval_ms, close_on_terminal)

    def get_async_job_websocket_url(
        self, kind: str, job_id: str, interval_ms: int | None = None, close_on_terminal: bool | None = None
    ) -> str:
        """Return the lifecycle-stream URL of an async job of ``kind`` batch or video (unused by the service)."""
        return websocket_url(self.base_url, kind, job_id, interval_ms, close_on_terminal)


class AsyncJobs:
    """The ``client.async_jobs`` namespace, mirroring the official SDKs' ``asyncJobs`` (unused by the service)."""

    def __init__(self, client: AIStats) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<AsyncJobs of {self._client!r}>"

    def websocket_url(
        self, kind: str, job_id: str, interval_ms: int | None = None, close_on_terminal: bool | None = None
    ) -> str:
        """Return the lifecycle-stream URL of an async job of ``kind`` batch or video."""
        return self._client.get_async_job_websocket_url(kind, job_id, interval_ms, close_on_terminal)
