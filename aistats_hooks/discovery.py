"""Change-driven polling of the gateway's batch list: reconcile only what moved, spend calls where changes are.

The real list returns at most 100 batches ordered by update time, newest
first, ``has_more`` always false and no working cursor: its first page is
what changed since the last poll, as long as fewer than 100 changed. So
instead of retrieving every open batch (100,000 retrieves a pass at 100,000
open batches), the cron's ``discover`` job reads first pages of two views:

- ``ended`` (``statuses=completed,failed,cancelled,expired``): where an open
  batch lands when it ends. Polled *adaptively*: each poll counts the items
  newer than the newest one seen before, smooths that into a rate, and waits
  until about ``TARGET_NEW`` (75 of the page's 100) should have arrived, at
  least ``MIN_GAP`` seconds and at most a quarter of
  AISTATS_DISCOVERY_INTERVAL (15 s by default: a wave of endings that starts
  from quiet is seen within 15 s). At 1,000 endings a minute that is one call
  every ~4.5 s; a quiet gateway costs four calls a minute. A page that holds
  only new items may have lost some beyond it (overflow): the four groups are
  then read one by one (four more pages) and the next poll comes after
  ``MIN_GAP``; what was still beyond is left to the sweep's backstop.
- ``active`` (``statuses=pending,in_progress``): batches created elsewhere
  and not known here. Progress moves update times constantly here, so its
  rate says nothing: it is read every AISTATS_DISCOVERY_INTERVAL.

The names are the gateway's filter names (``pending`` covers pending, queued
and validating; ``validating`` itself is no name, and a filter of unknown
names only would list everything), and ``limit`` is always sent (without it
the gateway lists one item): docs/protocol.md, "List". The order moves with
every successful retrieve, ours included, and with the gateway's own passes
over open batches: an ended batch we retrieve shows up again at the top of
``ended``, counted in its rate (it takes a place on the page like an ending)
and not reconciled again (its record is final).

A listed batch we do not know, or whose listed status differs from our
non-final record, gets a reconcile request (coalesced as usual); nothing
else is retrieved. Open batches that never show up changed are retrieved
only by the sweep's capped backstop (workers.jobs.sweep). One process polls
at a time (a lock): two cron processes do not double the calls.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from . import upstream_health
from .errors import AIStatsError
from .rules.merge import is_final
from .sdk import AIStats
from .rules.status import normalize_status
from .store import Store
from .store.process_lock import hold
from .rules.timestamps import parse_time

log = logging.getLogger("aistats_hooks.discovery")

# View name -> (the list's statuses= value, adaptive?).
VIEWS: dict[str, tuple[str, bool]] = {
    "ended": ("completed,failed,cancelled,expired", True),
    "active": ("pending,in_progress", False),
}
# Read one by one when the ended view overflowed: four more pages of 100.
ENDED_GROUPS = ("completed", "failed", "cancelled", "expired")
PAGE = 100  # the real list's largest page
# New items aimed at per poll: a Poisson count of mean 75 passes 100 about once in 2,000 polls.
TARGET_NEW = 75
MIN_GAP = 1.0
# How a falling rate is smoothed (a rising one is taken at once: missing changes costs more than a call).
SMOOTHING = 0.5
# A view polled for the first time is polled again this soon, to measure its rate.
FIRST_GAP = 5.0
# The adaptive view's longest gap is a quarter of AISTATS_DISCOVERY_INTERVAL, never under this.
MIN_QUIET_GAP = 5.0
LOCK_MS = 30_000
# The slot of a reconcile queued longer ago than this is presumed lost and replaced (as the sweep does).
PENDING_MAX_AGE = 300


@dataclass(frozen=True)
class ViewState:
    """What one view's last poll saw, and when to poll it next."""

    newest: float = 0.0  # the newest update time listed (unix seconds)
    at_newest: tuple[str, ...] = ()  # ids listed at exactly that time: seen, not new
    polled_at: float = 0.0
    rate: float = 0.0  # new items a second, smoothed
    due: float = 0.0

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: bytes | str | None) -> ViewState:
        """Parse a stored state; anything unreadable starts afresh (the next poll measures again)."""
        try:
            data = json.loads(raw) if raw else {}
            return cls(float(data["newest"]), tuple(map(str, data["at_newest"])), float(data["polled_at"]),
                       float(data["rate"]), float(data["due"]))
        except (ValueError, TypeError, KeyError):
            return cls()


def fresh(items: list[dict[str, Any]], state: ViewState) -> tuple[int, bool, float, tuple[str, ...]]:
    """Count the items new since ``state``; say if the page may have lost some; return the new watermark."""
    new, newest, at_newest = 0, state.newest, set(state.at_newest)
    for item in items:
        at = parse_time(item.get("updated_at")) or 0.0
        if at > state.newest or (at == state.newest and item["id"] not in state.at_newest):
            new += 1
        if at > newest:
            newest, at_newest = at, {item["id"]}
        elif at == newest:
            at_newest.add(item["id"])
    overflow = state.polled_at > 0 and len(items) >= PAGE and new == len(items)
    return new, overflow, newest, tuple(sorted(at_newest))


def next_state(state: ViewState, items: list[dict[str, Any]], now: float, *, adaptive: bool,
               longest: float) -> tuple[ViewState, int, bool]:
    """The view's state after a poll at ``now`` that listed ``items``: (state, new items, overflow). Pure."""
    new, overflow, newest, at_newest = fresh(items, state)
    rate, gap = state.rate, longest
    if adaptive:
        if state.polled_at <= 0:
            gap = min(FIRST_GAP, longest)
        else:
            seen = new / max(now - state.polled_at, 1e-3)
            # An overflowing page only says "at least this many": assume twice as many.
            seen = seen * 2 if overflow else seen
            rate = seen if seen >= rate else SMOOTHING * rate + (1 - SMOOTHING) * seen
            gap = MIN_GAP if overflow else gap_for(rate, longest)
    return ViewState(newest, at_newest, now, rate, now + gap), new, overflow


def gap_for(rate: float, longest: float) -> float:
    """Seconds until about TARGET_NEW new items are expected, within [MIN_GAP, longest]."""
    return longest if rate <= 0 else max(MIN_GAP, min(longest, TARGET_NEW / rate))


def poll(store: Store, client: AIStats, *, longest: float = 60.0, now: float | None = None,
         views: Iterable[str] = tuple(VIEWS), force: bool = False) -> dict[str, int]:
    """Poll every view that is due (every one with ``force``); queue reconciles of what moved; count."""
    counts = dict.fromkeys(("polls", "listed", "discovered", "changed", "queued", "overflow", "errors"), 0)
    redis, keys = store.redis, store.keys
    with hold(redis, keys.discovery_lock, LOCK_MS) as held:
        if not held:
            return counts  # another process is polling
        stored = redis.hgetall(keys.discovery)
        for view in views:
            state = ViewState.loads(stored.get(view.encode()) or stored.get(view))
            at = time.time() if now is None else now
            # Half a second early rather than a tick late: the cron ticks every second.
            if not force and state.due - 0.5 > at:
                continue
            state = _poll_view(store, client, view, state, at, longest, counts)
            redis.hset(keys.discovery, view, state.dumps())
    for name, value in counts.items():
        if value:
            store.incr("discovery", name, value)
    if counts["queued"] or counts["overflow"]:
        log.info("discovery: %d list calls, %d listed, %d discovered, %d changed, %d queued",
                 counts["polls"], counts["listed"], counts["discovered"], counts["changed"], counts["queued"])
    return counts


def _poll_view(store: Store, client: AIStats, view: str, state: ViewState, now: float, longest: float,
               counts: dict[str, int]) -> ViewState:
    """Read one view's first page (and, on overflow, its groups'); queue what moved; return the next state."""
    statuses, adaptive = VIEWS[view]
    quiet = max(MIN_QUIET_GAP, longest / 4) if adaptive else longest
    try:
        items = _page(client, statuses)
        counts["polls"] += 1
        state, _, overflow = next_state(state, items, now, adaptive=adaptive, longest=quiet)
        if overflow and view == "ended":
            counts["overflow"] += 1
            log.warning("more than %d batches ended between two polls: reading each group's first page", PAGE)
            for group in ENDED_GROUPS:
                items += _page(client, group)
                counts["polls"] += 1
    except AIStatsError as exc:
        counts["errors"] += 1
        upstream_health.failed(store.redis, store.keys, exc)
        log.warning("could not list batches (%s): %s: %s", view, type(exc).__name__, exc)
        return replace(state, due=now + retry_in(exc, longest))
    upstream_health.ok(store.redis, store.keys)
    _queue_moved(store, items, counts)
    return state


def retry_in(exc: AIStatsError, longest: float) -> float:
    """Seconds before polling again after a failed list: Retry-After, else soon if retrying may help."""
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        return float(retry_after)
    # A refusal (auth, 403) will not fix itself within seconds: once a period, and a warning each time.
    return min(longest, FIRST_GAP) if exc.retryable else longest


def _page(client: AIStats, statuses: str) -> list[dict[str, Any]]:
    """The first page of a statuses= filter: items with an id only."""
    page = client.list_batches(statuses=statuses, limit=PAGE)
    return [i for i in page.get("data") or [] if isinstance(i, dict) and isinstance(i.get("id"), str)]


def _queue_moved(store: Store, items: list[dict[str, Any]], counts: dict[str, int]) -> None:
    """Queue a reconcile of every listed batch unknown here, or listed in another status than our open record."""
    listed: dict[str, dict[str, Any]] = {}
    for item in items:
        listed.setdefault(item["id"], item)
    ids = list(listed)
    counts["listed"] += len(ids)
    for batch_id, record in zip(ids, store.get_many(ids) if ids else []):
        if record is None:
            counts["discovered"] += 1
        elif is_final(record) or _same(record, listed[batch_id]):
            continue
        else:
            counts["changed"] += 1
        counts["queued"] += store.request_reconcile(batch_id, max_pending_age=PENDING_MAX_AGE) == "queued"


def _same(record: dict[str, Any], item: dict[str, Any]) -> bool:
    """True when the listed status is the one we hold (both normalized)."""
    return normalize_status(item.get("status")) == normalize_status(record.get("status"))
