"""One HTTP POST with a total deadline and a cap on the answer read: what a forwarding attempt may cost.

httpx's timeouts are per operation: a destination that sends one byte a
second never trips a 10 s read timeout, and ``client.post`` reads a 400 MB
answer whole. Here the whole attempt (connect, send, headers, body) runs
under ``asyncio.timeout``, which cancels whatever await is pending when the
deadline passes, and the answer is streamed raw and dropped after
``max_bytes``: a worker's time and memory per attempt are bounded whatever
the destination does. The request is never redirected.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

TIMEOUT_ERROR = "timeout"


@dataclass(frozen=True)
class Answer:
    """What one attempt got: a status code, or an error name (``timeout`` when the deadline passed)."""

    status_code: int | None = None
    error: str | None = None
    bytes_read: int = 0


def post(url: str, body: bytes, headers: dict[str, str], *, deadline_s: float, max_bytes: int) -> Answer:
    """POST ``body`` to ``url``; give up after ``deadline_s`` seconds in all, read at most ``max_bytes`` back."""
    try:
        return asyncio.run(_bounded(url, body, headers, deadline_s, max_bytes))
    except TimeoutError:
        return Answer(error=TIMEOUT_ERROR)
    except httpx.HTTPError as exc:
        return Answer(error=type(exc).__name__)


async def _bounded(url: str, body: bytes, headers: dict[str, str], deadline_s: float, max_bytes: int) -> Answer:
    async with asyncio.timeout(deadline_s):
        # httpx's per-operation timeout is set past the deadline: asyncio.timeout is the bound that counts.
        async with httpx.AsyncClient(timeout=deadline_s + 5, follow_redirects=False) as client:
            async with client.stream("POST", url, content=body, headers=headers) as response:
                read = 0
                async for chunk in response.aiter_raw():  # raw: a compressed answer is not inflated
                    read += len(chunk)
                    if read >= max_bytes:
                        break  # closing the stream drops the connection: the rest is never read
                return Answer(status_code=response.status_code, bytes_read=min(read, max_bytes))
