"""Tell someone when work fails for good: ``AISTATS_ALERT_URLS``, one folded alert per (kind, subject).

Kinds:
- ``dead_letter``: a job failed every try (subject: its queue and function);
- ``forwarding_disabled``: a forwarding destination was disabled (subject: the masked URL);
- ``discovery_stalled`` / ``sweep_stalled``: no successful run for 10 minutes while the cron runs;
- ``batch_cost``: a batch settled above ``AISTATS_ALERT_BATCH_USD`` (subject: the batch id);
- ``daily_spend``: spend in a UTC day passed ``AISTATS_ALERT_DAILY_USD`` (subject: the day).

``observe`` is called by the alert tick (``workers.alert_jobs.tick``, every
30 s from the cron) with each condition it sees, active or not. An alert is
sent when a condition becomes active, then at most once per ``FOLD_SECONDS``
while it stays active, carrying the count of what was folded in; when it
clears, a ``resolved`` message is sent once. The state of each alert is one
field of the hash ``{p}:alerts`` (JSON), so every process sees the same.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from redis import Redis

from ..keys import Keys

FOLD_SECONDS = 15 * 60
STALLED_AFTER = 10 * 60
# Kinds with no recovery of their own (a settled batch stays settled): closed as soon as they are sent.
ONE_SHOT = frozenset({"batch_cost"})


@dataclass
class AlertState:
    kind: str
    subject: str
    summary: str
    first_seen: float
    last_seen: float
    count: int = 1  # how many times it happened since first_seen (dead letters, ...)
    sent_count: int = 0  # the count when last sent
    last_sent: float = 0.0
    open: bool = True
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    """One alert or resolve to send."""

    kind: str
    subject: str
    summary: str
    status: str  # "firing" or "resolved"
    first_seen: float
    count: int
    details: dict

    def body(self, dashboard_url: str | None) -> dict:
        verb = "RESOLVED" if self.status == "resolved" else "ALERT"
        text = f"[aistats-hooks] {verb} {self.kind}: {self.summary}"
        if self.status == "firing" and self.count > 1:
            text += f" ({self.count} times since {iso(self.first_seen)})"
        if dashboard_url:
            text += f" - {dashboard_url}"
        return {"text": text, "kind": self.kind, "subject": self.subject, "summary": self.summary,
                "status": self.status, "first_seen": iso(self.first_seen), "count": self.count,
                "dashboard": dashboard_url, "details": self.details}


def iso(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def state_key(keys: Keys) -> str:
    return f"{keys.prefix}:alerts"


def _field(kind: str, subject: str) -> str:
    return f"{kind}\n{subject}"


def load(redis: Redis, keys: Keys) -> list[AlertState]:
    out = []
    for raw in redis.hvals(state_key(keys)):
        try:
            out.append(AlertState(**json.loads(raw)))
        except (ValueError, TypeError):
            continue
    return out


def open_alerts(redis: Redis, keys: Keys) -> list[AlertState]:
    """What is open now, newest first (the CLI's ``alerts`` and the dashboard)."""
    return sorted((a for a in load(redis, keys) if a.open), key=lambda a: a.last_seen, reverse=True)


def observe(redis: Redis, keys: Keys, kind: str, subject: str, active: bool, summary: str = "", *,
            count: int = 1, details: dict | None = None, now: float | None = None) -> Message | None:
    """Record whether the condition (kind, subject) holds now, and how many times it happened; return what is due.

    Due: a condition that just became active; while it stays active, another alert when ``count`` grew and
    ``FOLD_SECONDS`` passed since the last one (it says how many were folded in); a resolve once it clears.
    The caller sends the message, then calls ``sent``; a message not sent is due again at the next call.
    """
    now = time.time() if now is None else now
    raw = redis.hget(state_key(keys), _field(kind, subject))
    state = AlertState(**json.loads(raw)) if raw else None
    if not active:
        if state is None or not state.open:
            return None
        return Message(kind, subject, state.summary, "resolved", state.first_seen, state.count, state.details)
    if state is None or not state.open:
        if state is not None and kind in ONE_SHOT:
            return None  # told once already
        state = AlertState(kind, subject, summary, now, now, count=max(count, 1), details=details or {})
    else:
        state.count = max(state.count, count)
        state.last_seen = now
        state.summary = summary or state.summary
        state.details = details or state.details
    _save(redis, keys, state)
    if state.last_sent and (now - state.last_sent < FOLD_SECONDS or state.count <= state.sent_count):
        return None  # folded into the next one, or nothing new
    return Message(kind, subject, state.summary, "firing", state.first_seen, state.count, state.details)


def sent(redis: Redis, keys: Keys, message: Message, *, now: float | None = None) -> None:
    """Note that ``message`` was delivered."""
    now = time.time() if now is None else now
    name = _field(message.kind, message.subject)
    raw = redis.hget(state_key(keys), name)
    if raw is None:
        return
    state = AlertState(**json.loads(raw))
    if message.status == "resolved" or message.kind in ONE_SHOT:
        state.open = False
    state.last_sent, state.sent_count = now, state.count
    _save(redis, keys, state)


def _save(redis: Redis, keys: Keys, state: AlertState) -> None:
    redis.hset(state_key(keys), _field(state.kind, state.subject), json.dumps(asdict(state), separators=(",", ":")))


def mark(redis: Redis, keys: Keys, what: str, ok: bool, *, now: float | None = None) -> None:
    """Record a run of a periodic task ("discovery", "sweep"), and whether it succeeded.

    ``<what>:try`` is the last run, ``<what>:ok`` the last success (the first run ever counts as one, so a
    task failing from its start is noticed too); ``<what>_stalled`` fires when they are 10 minutes apart.
    """
    stamp = f"{time.time() if now is None else now:.3f}"
    pipe = redis.pipeline(transaction=False)
    pipe.hset(f"{keys.prefix}:alive", f"{what}:try", stamp)
    if ok:
        pipe.hset(f"{keys.prefix}:alive", f"{what}:ok", stamp)
    else:
        pipe.hsetnx(f"{keys.prefix}:alive", f"{what}:ok", stamp)
    pipe.execute()


def last_ok(redis: Redis, keys: Keys) -> dict[str, float]:
    raw = redis.hgetall(f"{keys.prefix}:alive")
    return {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()}
