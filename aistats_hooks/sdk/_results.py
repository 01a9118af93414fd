"""Batch results and file content: streamed rows, and downloads to disk.

``stream_results`` and ``download_results`` ask ``GET /v1/batches/{id}/results`` first (JSONL, the
output rows then the error rows; where a gateway serves it, 10 downloads per batch per 30 minutes,
else 429). The gateway's source has no such route: on its 404 (any but the route's own reasons)
the client remembers that and reads the batch's files instead: ``GET /v1/files/{id}/content`` of
the ``output_file_id`` then the ``error_file_id`` from a retrieve (Google's ids are names such as
``files/abc``: escaped into one path segment). While the batch is not finished the answer is
``ResultsNotReady``; without any output ``NotFoundError``.

Memory stays bounded: rows are parsed line by line, and a line longer than
``max_line_bytes`` (or not a JSON object) raises ``ResultsFormatError`` naming its number.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Generator, Iterable, Iterator
from typing import Any

import httpx

from ..errors import NotFoundError, ResultsFormatError, ResultsNotReady
from ._client import BaseClient
from ._validate import file_segment, refuse, segment

DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
RESULTS_ACCEPT = "application/x-ndjson, application/jsonl;q=0.9, */*;q=0.1"
READ_CHUNK_BYTES = 64 * 1024
# Statuses after which a batch's files are final (retrieve keeps expired; canceled is the provider's spelling).
FINISHED = frozenset({"completed", "failed", "expired", "cancelled", "canceled"})
# The 404s the results route itself answers (so it exists); any other 404 there means no such route.
ROUTE_404_REASONS = frozenset({"batch_results_unavailable", "batch_not_found_or_not_owned"})


def _parse_line(line: bytes, number: int) -> dict[str, Any] | None:
    """Return the row on one line, None for a blank line; raise on anything but an object."""
    line = line.strip()
    if not line:
        return None
    try:
        row = json.loads(line)
    except ValueError:  # includes UnicodeDecodeError
        raise ResultsFormatError(f"results line {number} is not valid JSON", reason="results_line_invalid") from None
    if not isinstance(row, dict):
        raise ResultsFormatError(f"results line {number} is not a JSON object", reason="results_line_invalid")
    return row


def iter_jsonl(chunks: Iterable[bytes], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL byte stream, holding at most one line in memory."""
    buffer = bytearray()
    number = 0
    for chunk in chunks:
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            number += 1
            if end - start > max_line_bytes:
                raise _too_long(number, max_line_bytes)
            row = _parse_line(bytes(buffer[start:end]), number)
            start = end + 1
            if row is not None:
                yield row
        del buffer[:start]
        if len(buffer) > max_line_bytes:
            raise _too_long(number + 1, max_line_bytes)
    if buffer:
        row = _parse_line(bytes(buffer), number + 1)
        if row is not None:
            yield row


def _too_long(number: int, limit: int) -> ResultsFormatError:
    return ResultsFormatError(f"results line {number} is longer than {limit} bytes", reason="results_line_too_long")


def iter_results_file(path: str | os.PathLike[str], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[dict[str, Any]]:
    """Yield the rows of a results file saved by ``download_results`` (or any JSONL file)."""
    _check_limit(max_line_bytes)
    with open(path, "rb") as handle:
        yield from iter_jsonl(iter(lambda: handle.read(READ_CHUNK_BYTES), b""), max_line_bytes)


class _Bodies:
    """The bodies of several files read one after the other; the first is opened by the caller (so its
    errors raise at the call), the next ones when reached; ``close`` releases whichever is open."""

    def __init__(self, client: ResultsMixin, first: httpx.Response, rest: list[str]) -> None:
        self._client, self._open, self._rest = client, first, rest

    def chunks(self) -> Iterator[bytes]:
        while self._open is not None:
            try:
                yield from self._client._iter_bytes(self._open)
            finally:
                self._open.close()
            self._open = self._client._open_file(self._rest.pop(0)) if self._rest else None

    def close(self) -> None:
        if self._open is not None:
            self._open.close()


class ResultRows(Iterator[dict[str, Any]]):
    """The rows of one results response; closes the connection when exhausted, failed or closed.

    Use as a context manager (or call ``close``) when not reading to the end.
    """

    def __init__(self, response: httpx.Response | _Bodies, rows: Generator[dict[str, Any], None, None]) -> None:
        self._response = response
        self._rows = rows

    def __iter__(self) -> ResultRows:
        return self

    def __next__(self) -> dict[str, Any]:
        try:
            return next(self._rows)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop reading and release the connection."""
        self._rows.close()
        self._response.close()

    def __enter__(self) -> ResultRows:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ResultsMixin(BaseClient):
    """``stream_results``, ``download_results`` and ``download_file``."""

    def stream_results(self, batch_id: str, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> ResultRows:
        """Return an iterator of a batch's result rows (output rows, then error rows).

        The request is sent now: ``ResultsNotReady`` (409), ``NotFoundError`` (404) and
        ``RateLimitError`` (429, ``retry_after``) raise here, not at the first row. Each call
        spends one of the gateway's 10 attempts per batch per 30 minutes; to read the rows
        more than once, ``download_results`` and then ``iter_results_file``.
        """
        _check_limit(max_line_bytes)  # before the request: a refused call must not spend an attempt
        bodies = self._open_results(batch_id)
        return ResultRows(bodies, iter_jsonl(bodies.chunks(), max_line_bytes))

    def download_results(self, batch_id: str, path: str | os.PathLike[str]) -> int:
        """Save a batch's results JSONL to ``path`` (atomically) and return the bytes written.

        One attempt of the gateway's 10 per batch per 30 minutes: read the file afterwards
        with ``iter_results_file`` rather than downloading again.
        """
        bodies = self._open_results(batch_id)
        return self._save(bodies.chunks(), bodies.close, path)

    def download_file(self, file_id: str, path: str | os.PathLike[str]) -> int:
        """Save a file's content (e.g. a batch's ``output_file_id``) to ``path`` atomically; return its size."""
        response = self._open_file(file_id)
        return self._save(self._iter_bytes(response), response.close, path)

    def _open_file(self, file_id: str) -> httpx.Response:
        """Open ``GET /v1/files/{id}/content`` (an id with slashes, as Google's, is one escaped segment)."""
        return self._open_stream(f"files/{file_segment(file_id, 'file_id')}/content", results=True, accept="*/*")

    def _open_results(self, batch_id: str) -> _Bodies:
        """Open the results route where the gateway answers it, else the batch's output then error file.

        A 404 that is not one of the route's own (``batch_results_unavailable``, ``batch_not_found_or_not_owned``)
        means the route does not exist, as in the gateway's source: this client then stops asking for it."""
        if getattr(self, "_results_route", None) is not False:
            try:
                response = self._open_stream(_results_path(batch_id), results=True, accept=RESULTS_ACCEPT)
            except NotFoundError as exc:
                if exc.reason in ROUTE_404_REASONS:
                    raise
                self._results_route = False
            else:
                self._results_route = True
                return _Bodies(self, response, [])
        batch = self.retrieve_batch(batch_id)  # type: ignore[attr-defined]
        files = [f for f in (batch.get("output_file_id"), batch.get("error_file_id")) if isinstance(f, str) and f]
        status = str(batch.get("status") or "").lower()
        if status not in FINISHED:
            raise ResultsNotReady(f"the results of {batch_id} are not ready: the batch is {status or 'not finished'}",
                                  code="not_ready", reason="batch_not_terminal")
        if not files:
            raise NotFoundError(f"batch {batch_id} has no output or error file", code="not_found",
                                reason="batch_results_unavailable")
        return _Bodies(self, self._open_file(files[0]), files[1:])

    def _save(self, chunks: Iterable[bytes], close, path: str | os.PathLike[str]) -> int:
        """Stream a body into a temporary file beside ``path``, then rename it into place.

        A reader of ``path`` sees the old file or the whole new one, never a part; a failed
        download leaves no temporary file behind. The file is created readable by its owner only.
        """
        target = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(target))
        written = 0
        try:
            fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".part", dir=directory)
            try:
                with os.fdopen(fd, "wb") as out:
                    for chunk in chunks:
                        out.write(chunk)
                        written += len(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        finally:
            close()
        return written


def _check_limit(max_line_bytes: object) -> None:
    if isinstance(max_line_bytes, bool) or not isinstance(max_line_bytes, int) or max_line_bytes < 1:
        refuse(f"max_line_bytes must be a positive whole number, got {max_line_bytes!r}", "invalid_max_line_bytes")


def _results_path(batch_id: str) -> str:
    return f"batches/{segment(batch_id, 'batch_id')}/results"
