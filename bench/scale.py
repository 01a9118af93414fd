"""Phase 4, scale: query latency with 1,000 and with 100,000 batches stored.

Two tenants share the one Redis: 1,000 records under one key prefix and
100,000 under another, each served by its own gunicorn (the production
settings). Requests alternate between the two, so both sizes are measured
under the same conditions (the machine is shared). Records are seeded
straight through ``Store.save`` on pipelines: realistic reconciled records
from the merge rules, over 90 days, 4 models, one session per 20 batches.
Latency must not grow with the number of batches: p50 at 100k within 1.3x
of p50 at 1k.
"""

from __future__ import annotations

import copy
import statistics
import time
from datetime import datetime, timedelta, timezone

import httpx

from aistats_hooks.rules.merge import merge
from aistats_hooks.rules.status import Source
from aistats_hooks.store import Store

from . import deliveries, procs
from .context import Bench, Row
from .reconcile import pct

MODELS = ("openai/gpt-5-mini", "openai/gpt-5-nano", "anthropic/claude-haiku-4-5", "google/gemini-2.5-flash")
STATUSES = ("completed",) * 17 + ("failed", "cancelled", "in_progress")
QUERIES = {
    "GET /batches": "/batches",
    "GET /batches?status=completed": "/batches?status=completed",
    "GET /billing/summary": "/billing/summary",
    "GET /billing/summary?group_by=model": "/billing/summary?group_by=model",
}
GROWTH_LIMIT = 1.3


def _record(base: dict, i: int) -> dict:
    obj = copy.deepcopy(base)
    created = datetime(2026, 3, 1, tzinfo=timezone.utc) + timedelta(seconds=i * 77 % (90 * 86400))
    status = STATUSES[i % len(STATUSES)]
    model = MODELS[i % len(MODELS)]
    obj.update(id=f"batch_scale_{i:07d}", status=status, model=model, provider=model.split("/")[0],
               session_id=f"session-{i // 20}", created_at=created.isoformat().replace("+00:00", "Z"),
               updated_at=(created + timedelta(minutes=10)).isoformat().replace("+00:00", "Z"))
    if status != "completed":
        obj["billing"] = dict(obj["billing"], state="void" if status != "in_progress" else "pending",
                              total_nanos=0, charged=False)
    return merge(None, obj, source=Source.RETRIEVE)


def seed(store: Store, count: int, *, chunk: int = 500) -> None:
    """Save ``count`` records in pipelines of ``chunk``."""
    base = deliveries.sample()["data"]
    for lo in range(0, count, chunk):
        pipe = store.redis.pipeline(transaction=False)
        for i in range(lo, min(count, lo + chunk)):
            store.save(_record(base, i), pipeline=pipe)
        pipe.execute()


def _latencies(urls: dict[str, str], token: str, samples: int) -> dict[str, dict[str, list[float]]]:
    """Ask every query of every tenant in turn, ``samples`` times; return seconds by tenant and query."""
    out: dict[str, dict[str, list[float]]] = {t: {q: [] for q in QUERIES} for t in urls}
    clients = {t: httpx.Client(base_url=u, headers={"Authorization": f"Bearer {token}"}, timeout=30)
               for t, u in urls.items()}
    try:
        for client in clients.values():
            for path in QUERIES.values():
                client.get(path).raise_for_status()  # warm
        order = list(urls)
        for n in range(samples):
            for name, path in QUERIES.items():
                for tenant in (order if n % 2 else order[::-1]):
                    started = time.perf_counter()
                    clients[tenant].get(path).raise_for_status()
                    out[tenant][name].append(time.perf_counter() - started)
    finally:
        for client in clients.values():
            client.close()
    return out


def run(bench: Bench, *, small: int = 1_000, large: int = 100_000, samples: int = 150) -> dict:
    """Seed both tenants, measure them side by side; add the rows; return the numbers."""
    bench.flush()
    tenants = {"small": ("s1", small), "large": ("s2", large)}
    started = time.monotonic()
    used = {}
    for tenant, (prefix, count) in tenants.items():
        mark = bench.redis.info_memory()
        seed(Store(bench.client(), bench.settings(prefix=prefix)), count)
        used[tenant] = bench.redis.info_memory() - mark
    seeded_in = time.monotonic() - started
    bench.redis.settle()  # no AOF rewrite in the middle of the measurement
    apps, urls = [], {}
    try:
        for tenant, (prefix, _) in tenants.items():
            port = procs.free_port()
            apps.append(procs.gunicorn(f"gunicorn-scale-{prefix}", "app:app", port, bench.env(prefix=prefix),
                                       bench.folder))
            urls[tenant] = f"http://127.0.0.1:{port}"
        got = _latencies(urls, bench.token, samples)
    finally:
        for app in apps:
            app.stop()
    _rows(bench, small, large, got["small"], got["large"], used["large"] / large, seeded_in)
    return {"latency": got, "per_record": used["large"] / large}


def _rows(bench: Bench, small: int, large: int, at_small: dict, at_large: dict, per_record: float,
          seeded_in: float) -> None:
    for name in QUERIES:
        s50, l50 = pct(at_small[name], 0.5) * 1000, pct(at_large[name], 0.5) * 1000
        s99, l99 = pct(at_small[name], 0.99) * 1000, pct(at_large[name], 0.99) * 1000
        growth = l50 / s50 if s50 else 0
        bench.add(Row("scale", f"{name}: p50/p99 at {small // 1000}k vs {large // 1000}k",
                      f"{s50:.1f}/{s99:.1f} vs {l50:.1f}/{l99:.1f} ms", f"p50 growth <= {GROWTH_LIMIT}x",
                      growth <= GROWTH_LIMIT,
                      f"p50 x{growth:.2f}; mean {statistics.mean(at_large[name]) * 1000:.1f} ms at {large // 1000}k; "
                      "the two sizes asked alternately"))
    bench.add(Row("scale", f"Redis memory per stored record at {large // 1000}k", f"{per_record:,.0f} B",
                  note=f"record + indexes + ledger, no events; {small + large:,} seeded in {seeded_in:.0f} s"))
