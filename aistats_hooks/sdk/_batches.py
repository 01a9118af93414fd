"""Batches and file uploads."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import IO, Any

from ._client import BaseClient
from ._validate import refuse, query_params, segment, validate_batch_request


class BatchesMixin(BaseClient):
    """``create_batch``, ``retrieve_batch``, ``cancel_batch``, ``list_batches``, ``upload_file``."""

    def create_batch(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Create a batch; raise ``InvalidRequestError`` before any request when ``request`` is unusable.

        Name the webhook endpoint with ``webhook={"endpoint_id": "we_..."}`` (optionally with
        ``events``) or ``webhook_endpoint_id="we_..."``; inline webhook URLs are refused.
        """
        validate_batch_request(request)
        return self._request("POST", "batches", json=dict(request))

    def retrieve_batch(self, batch_id: str) -> dict[str, Any]:
        """Return the latest batch object."""
        return self._request("GET", f"batches/{segment(batch_id, 'batch_id')}")

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        """Ask the gateway to cancel a batch (cancellation itself is asynchronous)."""
        return self._request("POST", f"batches/{segment(batch_id, 'batch_id')}/cancel")

    def list_batches(self, **filters: Any) -> dict[str, Any]:
        """List owned batches; a list filter value becomes a repeated query parameter."""
        return self._request("GET", "batches", params=query_params(filters))

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
            refuse("file must be a path, bytes or a file object opened in binary mode", "invalid_file")
        name = getattr(file, "name", None)
        default = os.path.basename(name) if isinstance(name, str) and name else "requests.jsonl"
        return self._upload(file, purpose, filename or default)

    def _upload(self, content: bytes | IO[bytes], purpose: str, filename: str) -> dict[str, Any]:
        """Post one multipart upload."""
        files = {"file": (filename, content, "application/jsonl")}
        return self._request("POST", "files", data={"purpose": purpose}, files=files)
