"""Measurements any process records into Redis, for ``GET /metrics`` to expose.

Counters live in ``{p}:m:*`` hashes (``store.counters``); this module adds the
reconcile-duration histogram: fixed buckets in one counter hash, stored
non-cumulatively (``le:<bound>`` fields plus ``le:+Inf``), accumulated at
scrape time.
"""

from __future__ import annotations

from redis.client import Pipeline

from .store import Store

# Seconds; a reconcile is one retrieve call plus a few Redis writes.
RECONCILE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
HISTOGRAM_KEY = "reconcile_seconds"  # the counter hash's name


def observe_reconcile(store: Store, seconds: float, *, pipeline: Pipeline | None = None) -> None:
    """Add one reconcile duration to the shared histogram."""
    seconds = max(0.0, float(seconds))
    bound = next((b for b in RECONCILE_BUCKETS if seconds <= b), None)
    field = "le:+Inf" if bound is None else f"le:{bound:g}"
    counters = store.counter_hashes
    pipe = pipeline if pipeline is not None else store.redis.pipeline(transaction=False)
    counters.incr(HISTOGRAM_KEY, field, pipeline=pipe)
    counters.incr(HISTOGRAM_KEY, "count", pipeline=pipe)
    counters.add_float(HISTOGRAM_KEY, "sum", seconds, pipeline=pipe)
    if pipeline is None:
        pipe.execute()
