"""The dashboard's overview: every number on its first page, from indexes, counters and the ledger.

Nothing here scans batches: status counts are the sizes of the status
indexes, open batches the size of the sweep's set, queue depth RQ's list and
registries, spend the ledger (through ``queries.billing_summary``, so the
totals are exactly what ``GET /billing/summary`` answers). The cost is a few
round trips whatever the number of batches stored.

Deliveries and rejections are counted by cumulative counters only (the
acknowledgement path adds no per-hour key). To show "the last 24 hours" the
overview keeps one snapshot of those counters per hour in ``{p}:m:hourly``
(written on the first view of each hour, pruned after two days) and shows
the difference to the newest snapshot at least 24 hours old; while none is
that old, the oldest one, and the page says since when.
"""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any

from . import dead_letters, queries
from .rules.status import BatchStatus
from .store import Store
from .store.script import text
from .rules.timestamps import iso

SNAPSHOTS = "hourly"  # counter-hash name: {p}:m:hourly, hour -> JSON of the counters then
WINDOW = timedelta(hours=24)
KEEP = timedelta(hours=48)
SPEND_DAYS = 30
# The overview's time ranges and the days of the per-day ledger each covers (24 h: yesterday and today,
# the finest the ledger keeps).
RANGES = {"24h": 2, "7d": 7, "30d": 30, "90d": 90}
DEFAULT_RANGE = "30d"


def overview(store: Store, *, now: float | None = None, span: str = DEFAULT_RANGE) -> dict[str, Any]:
    """Return the overview's numbers (see the module docstring for where each comes from).

    ``span`` (one of ``RANGES``) is the spend chart's range; an unknown one is the default.
    """
    span = span if span in RANGES else DEFAULT_RANGE
    now = time.time() if now is None else now
    today = datetime.fromtimestamp(now, tz=timezone.utc).date()
    queue = store.queue
    statuses = [s.value for s in BatchStatus]
    pipe = store.redis.pipeline(transaction=False)
    for status in statuses:
        pipe.zcard(store.keys.index("status", status))
    pipe.zcard(store.keys.index_all)
    pipe.zcard(store.keys.open)
    pipe.llen(queue.key)
    pipe.zcard(queue.scheduled_job_registry.key)
    pipe.zcard(queue.started_job_registry.key)
    pipe.hgetall(store.keys.counters("deliveries"))
    pipe.hgetall(store.keys.counters("rejected"))
    pipe.hgetall(store.keys.counters(SNAPSHOTS))
    *by_status, total, open_count, queued, scheduled, started, delivered, rejected, snaps = pipe.execute()
    counters = {"deliveries": _ints(delivered), "rejected": _ints(rejected)}
    recent = _recent(store, counters, snaps, now)
    days = spend_per_day(store, today, RANGES[span])
    return {
        "generated_at": iso(now),
        "batches": {"total": total, "by_status": dict(zip(statuses, by_status)), "open": open_count},
        "queue": {"queued": queued, "scheduled": scheduled, "running": started,
                  "failed": dead_letters.count(queue)},
        "spend": {
            "all_time": queries.billing_summary(store, "day"),
            "range": span,
            "per_day": days,
            "by_model": queries.billing_summary(store, "model"),
            "by_provider": queries.billing_summary(store, "provider"),
        },
        "deliveries": {"all_time": counters["deliveries"], **recent["deliveries"]},
        "rejected": {"all_time": counters["rejected"], **recent["rejected"]},
        "recent_since": recent["since"],
        "recent_full_window": recent["full"],
    }


def spend_per_day(store: Store, today: date, days: int = SPEND_DAYS) -> dict[str, Any]:
    """Return ``billing_summary`` by day for the ``days`` ending ``today``, with every day listed (0 when none)."""
    since = today - timedelta(days=days - 1)
    summary = queries.billing_summary(store, "day", since, today)
    spent = {g["key"]: g["total_nanos"] for g in summary["groups"]}
    summary["days"] = [{"day": d, "total_nanos": spent.get(d, 0)}
                       for d in ((since + timedelta(days=i)).isoformat() for i in range(days))]
    return summary


def _recent(store: Store, counters: dict[str, dict[str, int]], snaps: dict, now: float) -> dict[str, Any]:
    """Counters minus the baseline snapshot; records this hour's snapshot and prunes old ones."""
    hour = _hour(now)
    snapshots = {text(k): json.loads(v) for k, v in snaps.items()}
    key = store.keys.counters(SNAPSHOTS)
    if hour not in snapshots:
        snap = {"at": now, **counters}
        # HSETNX: of two processes viewing at once, the first snapshot of the hour stays.
        store.redis.hsetnx(key, hour, json.dumps(snap, separators=(",", ":")))
        snapshots.setdefault(hour, snap)
    stale = [h for h in snapshots if h < _hour(now - KEEP.total_seconds())]
    if stale:
        store.redis.hdel(key, *stale)
    cutoff = now - WINDOW.total_seconds()
    old_enough = [s for s in snapshots.values() if s["at"] <= cutoff]
    base = max(old_enough, key=lambda s: s["at"]) if old_enough else min(snapshots.values(), key=lambda s: s["at"])
    out: dict[str, Any] = {"since": iso(base["at"]), "full": bool(old_enough)}
    for name, current in counters.items():
        before = base.get(name, {})
        out[name] = {"recent": {k: max(0, v - int(before.get(k, 0))) for k, v in current.items()
                                if v - int(before.get(k, 0)) > 0}}
    return out


def _hour(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H")


def _ints(raw: dict) -> dict[str, int]:
    out = {}
    for key, value in raw.items():
        try:
            out[text(key)] = int(value)
        except (TypeError, ValueError):
            continue
    return out
