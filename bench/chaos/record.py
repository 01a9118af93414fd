"""What was sent and how the receiver answered: the ledger of the run's own side.

Every request that reaches the receiver goes through here, whether the
sandbox sent it (through the tapping proxy) or the hostile client did.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from dataclasses import dataclass, field


def reason_of(status: int | None, body: bytes) -> str:
    """Return a short reason for an answer: ``"401 mismatch"``, ``"503 store_unavailable"``..."""
    if status is None:
        return "unreachable"
    try:
        data = json.loads(body)
        detail = data.get("reason") if status in (400, 401) or data.get("reason") == "not_replicated" \
            else data.get("error")
    except (ValueError, AttributeError):
        detail = None
    return f"{status} {detail}" if detail else str(status)


def is_5xx_bug(status: int | None) -> bool:
    """A 5xx that is not the documented 503 (Redis down) / 502 (web restarting)."""
    return status is not None and status >= 500 and status not in (502, 503)


@dataclass
class Captured:
    """A legit delivery the receiver acknowledged, kept for replays."""

    at: float
    event_id: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Record:
    """Counters and sets shared by the proxy, the hostile client and the fault schedule."""

    sent: int = 0
    acknowledged: int = 0
    rejected: collections.Counter = field(default_factory=collections.Counter)
    faults: collections.Counter = field(default_factory=collections.Counter)
    hostile: collections.Counter = field(default_factory=collections.Counter)
    forged_accepted: list = field(default_factory=list)
    server_errors: list = field(default_factory=list)
    acked: dict = field(default_factory=dict)  # event id -> batch id
    accepted_twice: collections.Counter = field(default_factory=collections.Counter)  # event id -> 202s
    timeline: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    captured: collections.deque = field(default_factory=lambda: collections.deque(maxlen=3000))
    flooded: list = field(default_factory=list)  # made-up batch ids sent more events than one batch may store
    started: float = field(default_factory=time.monotonic)

    def note(self, what: str) -> None:
        """Add a line to the fault timeline, with seconds since the start."""
        with self.lock:
            self.timeline.append(f"{time.monotonic() - self.started:7.1f}s {what}")
        print(f"chaos: {time.monotonic() - self.started:7.1f}s {what}", flush=True)

    def fault(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.faults[kind] += n

    def answer(self, status: int | None, body: bytes, *, hostile: str | None = None,
               event_id: str | None = None, batch_id: str | None = None) -> None:
        """Count one request's answer. ``hostile`` names the attack, when it is one."""
        ok = status is not None and 200 <= status < 300
        with self.lock:
            self.sent += 1
            if ok:
                self.acknowledged += 1
            else:
                self.rejected[reason_of(status, body)] += 1
            if is_5xx_bug(status):
                self.server_errors.append((hostile or "legit", status, body[:200].decode("utf-8", "replace")))
            if hostile is not None:
                self.hostile[f"{hostile}: {reason_of(status, body)}"] += 1
                if ok:
                    self.forged_accepted.append((hostile, status, body[:200].decode("utf-8", "replace")))
            elif ok and event_id and batch_id:
                self.acked.setdefault(event_id, batch_id)
                if status == 202:  # a fresh ingest: must happen once per event id
                    self.accepted_twice[event_id] += 1

    def capture(self, event_id: str, body: bytes, headers: dict[str, str]) -> None:
        with self.lock:
            signed_at = headers.get("x-phaseo-timestamp", "")
            at = float(signed_at) if signed_at.isdigit() else time.time()
            self.captured.append(Captured(at, event_id, body, headers))

    def take_captured(self, older_than: float, newer_than: float = 0.0, *, keep: bool = False) -> Captured | None:
        """Return a captured delivery signed between ``newer_than`` and ``older_than`` (unix seconds).

        It is removed unless ``keep``: an in-window replay keeps it, so it can age
        into an out-of-window replay later (the gateway sends few deliveries per
        batch, so captures are scarce).
        """
        with self.lock:
            for i, item in enumerate(self.captured):
                if newer_than <= item.at <= older_than:
                    if not keep:
                        del self.captured[i]
                    return item
        return None
