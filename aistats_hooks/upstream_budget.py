"""Every gateway call a worker makes waits for the shared budget (store.budget): an httpx transport.

Wrapping the transport, not each SDK method, covers every call the SDK can
make (retrieve, list, results, endpoints) with one rule. A 429 with
Retry-After pauses every process sharing the Redis. While a pause runs, or
when the bucket would make a call wait longer than ``MAX_WAIT_SECONDS``, the
call is not sent: the transport answers a local 429 with the time left as
Retry-After (header ``X-AIStats-Budget: local``), so the job's own retry
policy (workers.jobs: retry after Retry-After) applies and no worker sleeps
for minutes holding a batch's lock.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable

import httpx
from redis.exceptions import RedisError

from .sdk._errors import retry_after_seconds
from .store.budget import Budget

log = logging.getLogger("aistats_hooks.upstream_budget")
# Longest a call waits for its turn in the bucket; beyond, it is answered a local 429 (retried later).
MAX_WAIT_SECONDS = 5.0
# Longest Retry-After honoured as a shared pause.
MAX_PAUSE_SECONDS = 300


class BudgetTransport(httpx.BaseTransport):
    """Send each request once the shared budget grants it; turn a 429's Retry-After into a shared pause."""

    def __init__(self, budget: Budget, rps: float, inner: httpx.BaseTransport | None = None, *,
                 max_connections: int = 20, sleep: Callable[[float], None] = time.sleep) -> None:
        self.budget = budget
        self.rps = rps
        self.inner = inner or httpx.HTTPTransport(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections))
        # Injected so tests count waits without measuring time.
        self._sleep = sleep

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        refused = self._wait_turn(request)
        if refused is not None:
            return refused
        response = self.inner.handle_request(request)
        if response.status_code == 429:
            seconds = retry_after_seconds(response.headers.get("Retry-After"))
            if seconds:
                try:
                    self.budget.pause(int(min(seconds, MAX_PAUSE_SECONDS) * 1000))
                except RedisError as exc:  # the caller's own retry still waits; only the sharing is lost
                    log.warning("could not share the gateway's pause: %s", exc)
        return response

    def _wait_turn(self, request: httpx.Request) -> httpx.Response | None:
        """Wait for a token; return a local 429 instead when the wait would be long (or a pause runs)."""
        waited = 0.0
        while True:
            try:
                wait_ms = self.budget.take(self.rps)
            except RedisError as exc:
                # Without Redis the budget cannot be shared; the call goes (the job fails on Redis anyway).
                log.warning("gateway budget unavailable: %s", exc)
                return None
            if wait_ms <= 0:
                return None
            if waited + wait_ms / 1000 > MAX_WAIT_SECONDS:
                return _local_429(request, wait_ms / 1000)
            self._sleep(wait_ms / 1000)
            waited += wait_ms / 1000

    def close(self) -> None:
        self.inner.close()


def _local_429(request: httpx.Request, seconds: float) -> httpx.Response:
    """The answer to a call the budget holds back: what a gateway 429 looks like, marked as ours."""
    body = {"error": {"type": "rate_limit_error", "message": "held back by the shared gateway budget"}}
    return httpx.Response(429, headers={"Retry-After": str(max(1, math.ceil(seconds))),
                                        "X-AIStats-Budget": "local", "Content-Type": "application/json"},
                          content=json.dumps(body).encode(), request=request)
