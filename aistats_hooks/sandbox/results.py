"""Batch results: output and error files derived from the input rows, and the results route's limit."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Any

from .batch import Batch, price_of
from .ids import new_id, output_file_id

# The gateway allows 10 results downloads per batch in a sliding 30 minutes (real time here).
RESULTS_LIMIT = 10
RESULTS_WINDOW = 30 * 60.0


def _custom_id(row: dict[str, Any], n: int) -> str:
    value = row.get("custom_id")
    return value if isinstance(value, str) and value else f"request-{n + 1}"


def _rows(batch: Batch) -> list[dict[str, Any]]:
    """The input rows, or made-up ones for an unknown file accepted under the lenient knob."""
    return batch.rows or [{"custom_id": f"request-{n + 1}"} for n in range(batch.total)]


def output_line(batch: Batch, row: dict[str, Any], n: int) -> dict[str, Any]:
    """One OpenAI-style output row: a 200 response for the row's request."""
    custom_id = _custom_id(row, n)
    return {
        "id": f"batch_req_{batch.native_id[-12:]}{n:06d}",
        "custom_id": custom_id,
        "response": {
            "status_code": 200,
            "request_id": f"req_{batch.native_id[-12:]}{n:06d}",
            "body": {"id": f"resp_{n:06d}", "object": "response", "model": batch.model, "status": "completed",
                     "output_text": f"sandbox answer to {custom_id}",
                     "usage": {"input_tokens": 10, "output_tokens": 20, "total_tokens": 30},
                     "cost_nanos": price_of(batch.model)},
        },
        "error": None,
    }


def error_line(batch: Batch, row: dict[str, Any], n: int, code: str, message: str) -> dict[str, Any]:
    """One error row: the request that failed and why."""
    return {"id": f"batch_req_{batch.native_id[-12:]}{n:06d}", "custom_id": _custom_id(row, n),
            "response": None, "error": {"code": code, "message": message}}


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines)


def write_outputs(batch: Batch, files: dict[str, dict[str, Any]], now: float) -> None:
    """Store the batch's output and error files (as set by finish) with rows derived from its input."""
    rows = _rows(batch)
    done = batch.completed
    outputs = [output_line(batch, row, n) for n, row in enumerate(rows[:done])]
    if batch.status == "completed":
        errors = [error_line(batch, row, done + n, "request_failed", "the provider failed this request")
                  for n, row in enumerate(rows[done:done + batch.failed])]
    else:
        errors = [error_line(batch, row, done + n, f"batch_{batch.status}", f"the batch was {batch.status}")
                  for n, row in enumerate(rows[done:])]
    if outputs and batch.output_file_id is None:
        batch.output_file_id = output_file_id(batch.provider)
    if errors and batch.error_file_id is None and batch.status != "cancelled":
        batch.error_file_id = new_id("file_err")
    for file_id, lines, name in ((batch.output_file_id, outputs, "output"), (batch.error_file_id, errors, "error")):
        if file_id:
            content = _jsonl(lines)
            files[file_id] = {"id": file_id, "object": "file", "purpose": f"batch_{name}",
                              "filename": f"{batch.id}_{name}.jsonl", "bytes": len(content),
                              "created_at": int(now), "rows": [], "content": content}


class ResultsLimiter:
    """Count results downloads per batch in a sliding window, before the download."""

    def __init__(self, limit: int = RESULTS_LIMIT, window: float = RESULTS_WINDOW) -> None:
        self.limit, self.window = limit, window
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def attempt(self, batch_id: str) -> float | None:
        """Count an attempt; return None when allowed, else seconds until the oldest expires."""
        now = time.monotonic()
        with self._lock:
            seen = self._seen.setdefault(batch_id, deque())
            while seen and seen[0] <= now - self.window:
                seen.popleft()
            if len(seen) >= self.limit:
                return max(1.0, seen[0] + self.window - now)
            seen.append(now)
            return None
