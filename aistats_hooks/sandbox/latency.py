"""Upstream latency for the sandbox: every API answer waits ``latency_ms`` (plus up to ``jitter_ms``).

A real gateway answers in 50-200 ms where the sandbox answers in under one;
throughput measured without that delay flatters a worker that retrieves one
batch at a time. The delay is applied to the HTTP answers only (a WSGI
wrapper), never to the webhook deliveries the sandbox sends. The same
wrapper counts API calls per wall-clock second (``api_calls_by_second`` in
``/_sandbox/stats``), so a rate cap can be checked by counting, not timing.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from typing import Any


class Delayed:
    """A WSGI app that sleeps before handing each request to ``app``."""

    def __init__(self, app: Callable[..., Iterable[bytes]], latency_ms: float = 0.0, jitter_ms: float = 0.0, *,
                 seed: int | None = None, sleep: Callable[[float], None] = time.sleep,
                 count: Callable[[str], None] | None = None) -> None:
        if latency_ms < 0 or jitter_ms < 0:
            raise ValueError("latency_ms and jitter_ms must be >= 0")
        self.app = app
        self.latency_ms = float(latency_ms)
        self.jitter_ms = float(jitter_ms)
        self._random = random.Random(seed)
        # Injected so tests can see the delay without measuring wall-clock time.
        self._sleep = sleep
        # count(second) is called once per API call (not /_sandbox/), with the call's wall-clock second.
        self._count = count

    def delay_seconds(self) -> float:
        """Return this request's delay: the latency plus a uniform share of the jitter."""
        jitter = self._random.uniform(0.0, self.jitter_ms) if self.jitter_ms else 0.0
        return (self.latency_ms + jitter) / 1000.0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self._count is not None and not environ.get("PATH_INFO", "").startswith("/_sandbox"):
            self._count(str(int(time.time())))
        seconds = self.delay_seconds()
        if seconds > 0:
            self._sleep(seconds)
        return self.app(environ, start_response)
