"""Webhook delivery: a heap of due sends worked by a small pool of threads."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from dataclasses import dataclass, field

import httpx

from ..rules.signatures import SIGNATURE_HEADER, USER_AGENT, compute_signature, sign_headers
from .notifications import MAX_ATTEMPTS, Event
from .faults import DELAY_SECONDS, REPLAY_SECONDS
from .state import Gateway

# Simulated seconds before attempts 2, 3 and 4.
RETRY_DELAYS = (60.0, 300.0, 900.0)
# Longest real wait between looks at the heap; a push wakes waiters sooner.
MAX_WAIT = 0.25


@dataclass(order=True)
class Send:
    """One HTTP POST to make at simulated time ``due``."""

    due: float
    seq: int
    event: Event = field(compare=False)
    attempt: int = field(compare=False, default=1)
    # "event" (retried on failure), or a fault's extra copy: "duplicate", "replay".
    kind: str = field(compare=False, default="event")
    body: bytes | None = field(compare=False, default=None)
    headers: dict[str, str] | None = field(compare=False, default=None)


def delivery_headers(event: Event, attempt: int, body: bytes, secret: str | None, *,
                     forge: bool = False) -> dict[str, str]:
    """Return the delivery headers for one attempt, signed with ``secret`` and a fresh timestamp."""
    ids = {"event_id": event.id, "event_type": event.type, "delivery_key": event.key,
           "attempt": attempt, "max_attempts": MAX_ATTEMPTS}
    if not secret:
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        headers.update({f"x-phaseo-{name.replace('_', '-')}": str(value) for name, value in ids.items()})
        return headers
    # Real unix seconds: receivers check the timestamp against their real clock.
    timestamp = int(time.time())
    headers = sign_headers(secret, body, timestamp=timestamp, **ids)
    if forge:
        headers[SIGNATURE_HEADER] = compute_signature(secret + "-not-the-secret", timestamp, body)
    return headers


class Deliverer:
    """Send each event to its webhook, retrying on the gateway's schedule."""

    def __init__(self, gateway: Gateway, *, workers: int = 8, timeout: float = 30.0) -> None:
        self.gateway = gateway
        self.clock = gateway.clock
        self.stats = gateway.stats
        self.workers = workers
        self.timeout = timeout
        self._heap: list[Send] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._in_flight = 0
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._client: httpx.Client | None = None

    def start(self) -> None:
        """Open the shared HTTP client and start the worker threads."""
        # One client for all workers; redirects are failures, never followed.
        self._client = httpx.Client(
            timeout=self.timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=self.workers * 2, max_keepalive_connections=self.workers),
        )
        for n in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"sandbox-delivery-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the workers, dropping what is still queued, and close the client."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        # One shared deadline: a send in flight ends within the client timeout.
        deadline = time.monotonic() + self.timeout + 1
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._threads.clear()
        if self._client is not None:
            self._client.close()
            self._client = None

    def submit(self, events: list[Event]) -> None:
        """Queue the first attempt of each event, applying drop and delay."""
        now = self.clock.now()
        for event in events:
            if event.terminal and "drop" in event.faults:
                self.stats.incr("faults_injected", "drop")
                # What was to follow the terminal event still follows its absence.
                self._follow(event, now)
                continue
            due = now + event.delay
            if event.terminal and "delay" in event.faults:
                self.stats.incr("faults_injected", "delay")
                due += DELAY_SECONDS
            self._push(due, event)

    def idle(self) -> bool:
        """Say whether nothing is queued or being sent."""
        with self._cond:
            return not self._heap and not self._in_flight

    def queued(self) -> int:
        """Return how many sends are waiting, retries and fault copies included."""
        with self._cond:
            return len(self._heap)

    def _push(self, due: float, event: Event, attempt: int = 1, kind: str = "event",
              body: bytes | None = None, headers: dict[str, str] | None = None) -> None:
        """Queue one send and wake a worker."""
        with self._cond:
            heapq.heappush(self._heap, Send(due, next(self._seq), event, attempt, kind, body, headers))
            self._cond.notify()

    def _take(self) -> Send | None:
        """Block until a send is due and return it; None once stopping."""
        with self._cond:
            while not self._stopping:
                now = self.clock.now()
                if self._heap and self._heap[0].due <= now:
                    self._in_flight += 1
                    return heapq.heappop(self._heap)
                wait = self.clock.real_seconds(self._heap[0].due - now) if self._heap else MAX_WAIT
                self._cond.wait(min(wait, MAX_WAIT))
            return None

    def _work(self) -> None:
        """Deliver due sends until stopped."""
        while (send := self._take()) is not None:
            try:
                self._perform(send)
            except Exception:  # noqa: BLE001 - a receiver's failure must never kill a worker
                self.stats.incr("deliveries", "worker_errors")
            finally:
                with self._cond:
                    self._in_flight -= 1

    def _perform(self, send: Send) -> None:
        """Make one POST, count it, and schedule what follows from it."""
        event, attempt = send.event, send.attempt
        url, secret = self._target(event)
        if url is None:
            # The endpoint was deleted or disabled: the gateway delivers nothing.
            self.stats.incr("deliveries", "no_endpoint")
            return
        if send.body is not None and send.headers is not None:
            body, headers = send.body, send.headers
        else:
            if send.kind == "event" and attempt > 1:
                self.gateway.refresh(event)
            body = event.body(attempt)
            forge = send.kind == "event" and attempt == 1 and "bad_signature" in event.faults and bool(secret)
            if forge:
                self.stats.incr("faults_injected", "bad_signature")
            headers = delivery_headers(event, attempt, body, secret, forge=forge)
        if send.kind != "event":
            self.stats.incr("faults_injected", send.kind)
        elif event.stale and attempt == 1:
            self.stats.incr("faults_injected", "out_of_order")
        status, error = self._post(url, body, headers)
        ok = status is not None and 200 <= status < 300
        self._count(send.kind, status, ok)
        now = self.clock.now()
        retry_at = None
        if send.kind == "event":
            if not ok and attempt < MAX_ATTEMPTS:
                retry_at = now + RETRY_DELAYS[attempt - 1]
                self._push(retry_at, event, attempt + 1)
            elif not ok:
                self.stats.incr("deliveries", "permanently_failed")
            if attempt == 1:
                self._after_first(event, now)
            if ok and event.terminal and "replay" in event.faults:
                # Replay what the receiver accepted, byte for byte, timestamp and all.
                self._push(now + REPLAY_SECONDS, event, attempt, "replay", body, dict(headers))
        self.gateway.record_attempt(event, attempt, ok=ok, status=status, error=error, retry_at=retry_at,
                                    was_retry=send.kind == "event" and attempt > 1)

    def _target(self, event: Event) -> tuple[str | None, str | None]:
        """Resolve where and with which secret to send now: the endpoint's current URL and secret."""
        if event.endpoint_id is None:
            return event.url, event.secret
        endpoint = self.gateway.endpoints.active(event.endpoint_id)
        return (endpoint.url, endpoint.secret) if endpoint is not None else (None, None)

    def _after_first(self, event: Event, now: float) -> None:
        """Queue the duplicate and the followers of an event's first attempt."""
        if "duplicate" in event.faults:
            self._push(now, event, 1, "duplicate")
        self._follow(event, now)

    def _follow(self, event: Event, now: float) -> None:
        """Queue the events that must arrive after ``event`` (out_of_order)."""
        for follower in event.followups:
            self._push(now, follower)

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None]:
        """POST once; return the status (None on a network error) and an error message."""
        assert self._client is not None, "Deliverer.start() was not called"
        try:
            response = self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        status = response.status_code
        if 300 <= status < 400:
            return status, f"HTTP {status} (redirects are not followed)"
        return status, None if 200 <= status < 300 else f"HTTP {status}"

    def _count(self, kind: str, status: int | None, ok: bool) -> None:
        """Count one attempt in the delivery stats."""
        self.stats.incr("deliveries", "attempted")
        self.stats.incr("deliveries", "succeeded" if ok else "failed")
        self.stats.incr("deliveries", "by_status", str(status) if status is not None else "network_error")
        self.stats.incr("deliveries", "by_kind", kind)
