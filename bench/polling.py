"""Phase polling: the fallback at 100,000 open batches, 1% of them ending every minute, no webhooks.

The sandbox holds 100,000 batches in progress (``/_sandbox/seed``: no
webhook, so only polling can see them end), ending uniformly over 100
minutes after a lead time; progress steps keep moving their update times, as
on the real gateway. The service knows all of them as open (records seeded
through ``Store.save``, last reconciled at random over the past two hours, so
the sweep's backstop is busy at its cap). The Procfile's worker command (2)
and cron command run with their defaults. For every batch that ends in the
window the bench notes when the sandbox ended it and when its record became
final here; the sandbox counts every call. Calls beyond the ended batches'
own retrieves (list calls, and retrieves of batches still open: the
backstop) are scaled to an hour.

Baseline, computed (it cannot be run): the former sweep retrieved every open
batch every AISTATS_STALE_AFTER (300 s): 100,000 x 12 = 1,200,000 calls an
hour, beyond any rate limit.
"""

from __future__ import annotations

import random
import statistics
import time

from aistats_hooks.rules.merge import merge
from aistats_hooks.rules.status import Source
from aistats_hooks.store import Store

from . import deliveries, drive, procs
from .context import Bench, Row

WORKERS = 2
MAX_LAG_S = 120.0
TERMINAL = ("completed", "failed", "cancelled", "expired")
CALLS_PER_HOUR = 1_100
FORMER_STALE_AFTER = 300


def _seed_store(bench: Bench, seeded: list[dict], *, chunk: int = 1000) -> None:
    """Save every seeded batch as an open in-progress record, last reconciled at random in the past 2 hours."""
    store = Store(bench.client(), bench.settings())
    base = deliveries.sample()["data"]
    rng = random.Random(11)
    now = time.time()
    for lo in range(0, len(seeded), chunk):
        pipe = store.redis.pipeline(transaction=False)
        scores = {}
        for item in seeded[lo:lo + chunk]:
            obj = dict(base, id=item["id"], status="in_progress", model=item["model"], output_file_id=None,
                       request_counts={"total": item["total"], "completed": 0, "failed": 0},
                       billing=dict(base["billing"], state="pending", total_nanos=0, charged=False))
            store.save(merge(None, obj, source=Source.RETRIEVE), pipeline=pipe)
            scores[item["id"]] = now - rng.uniform(0, 7200)
        pipe.zadd(store.keys.open, scores)
        pipe.execute()


def _wait_final(bench: Bench, base_url: str, since: float, until: float, stop_at: float) -> list[dict]:
    """Wait out the window; then until every batch that ended in it is final here, or ``stop_at``; return them."""
    client = bench.client()
    time.sleep(max(0.0, until - time.time()))
    while True:
        ended = [e for e in drive.sandbox_json(base_url, bench.api_key, f"/_sandbox/ended?since={since}")["data"]
                 if e["at"] <= until]
        if len(drive.final_ids(client, bench.prefix, [e["id"] for e in ended])) == len(ended) \
                or time.time() >= stop_at:
            return ended
        time.sleep(2.0)


def _finals(bench: Bench, since: float) -> dict[str, float]:
    """When each batch's final transition was committed here: its change feed entry's time (ms, from its id)."""
    client = bench.client()
    key, start, out = f"{bench.prefix}:changes", f"{int(since * 1000)}-0", {}
    while True:
        entries = client.xrange(key, min=start, count=5000)
        for entry_id, fields in entries:
            if fields.get(b"status", b"").decode() in TERMINAL:
                out.setdefault(fields[b"batch_id"].decode(), int(entry_id.split(b"-")[0]) / 1000)
        if len(entries) < 5000:
            return out
        start = "(" + entries[-1][0].decode()


def run(bench: Bench, *, open_batches: int = 100_000, minutes: float = 4.0, tail_minutes: float = 2.0,
        spread_minutes: float = 100.0, lead_s: float = 60.0, warmup_s: float = 60.0) -> dict:
    """Seed, run the service's own processes for ``minutes`` of endings; add the rows; return the numbers."""
    bench.flush()
    sandbox, base_url = procs.sandbox(bench.api_key, 1, 21, procs.service_env(), bench.folder, delivery_workers=1,
                                      name="sandbox-polling")
    procs_started: list[procs.Proc] = []
    try:
        seeded_at = time.time()
        seeded = drive.sandbox_json(base_url, bench.api_key, "/_sandbox/seed", "POST",
                                    {"count": open_batches, "lead_s": lead_s, "spread_s": spread_minutes * 60,
                                     "seed": 5})["data"]
        _seed_store(bench, seeded)
        env = bench.env(base_url)
        procs_started = drive.start_workers(bench, WORKERS, base_url, worker_class="rq.SimpleWorker", tag="poll")
        procs_started.append(procs.rq_cron("rq-cron-poll", env, bench.folder))
        ready = time.time()
        first_end = seeded_at + lead_s
        if ready > first_end:
            raise RuntimeError(f"setup took {ready - seeded_at:.0f} s, longer than the {lead_s:g} s lead")
        # Steady state: endings have flowed for warmup_s before the window opens (the onset is noted apart).
        window = first_end + warmup_s
        time.sleep(max(0.0, window - time.time()))
        drive.sandbox_json(base_url, bench.api_key, "/_sandbox/reset-stats", "POST")
        counted_from = time.time()
        until = window + minutes * 60
        ended = _wait_final(bench, base_url, window, until, until + tail_minutes * 60)
        counted_to = time.time()
        finals = _finals(bench, first_end - 5)
        onset = [e["id"] for e in drive.sandbox_json(base_url, bench.api_key, f"/_sandbox/ended?since={first_end}")
                 ["data"] if e["at"] < window]
        stats = drive.sandbox_json(base_url, bench.api_key, "/_sandbox/stats")
        # Every batch ended by now (some after the window) is a changed batch: its retrieves are its own.
        changed = {e["id"] for e in drive.sandbox_json(base_url, bench.api_key, "/_sandbox/ended?since=0")["data"]}
        client = bench.client()
        counters = {k.decode(): int(v) for k, v in client.hgetall(f"{bench.prefix}:m:discovery").items()}
        swept = int(client.hget(f"{bench.prefix}:m:sweep", "queued") or 0)
    finally:
        drive.stop_workers(procs_started)
        sandbox.stop()
    by_batch = stats["retrieve_calls"]["by_batch"]
    own = sum(n for b, n in by_batch.items() if b in changed)
    in_window = {e["id"] for e in ended}
    per_ended = sum(n for b, n in by_batch.items() if b in in_window) / max(len(in_window), 1)
    beyond = stats["list_calls"] + sum(n for b, n in by_batch.items() if b not in changed)
    hours = (counted_to - counted_from) / 3600
    lags = sorted(finals[e["id"]] - e["at"] for e in ended if e["id"] in finals)
    out = {"ended": len(ended), "changed": len(changed), "lags": lags, "missed": len(ended) - len(lags),
           "list_calls": stats["list_calls"], "per_ended": per_ended,
           "own": own, "beyond": beyond, "per_hour": beyond / hours if hours else 0.0, "swept": swept,
           "counters": counters, "minutes": (counted_to - counted_from) / 60, "open": open_batches,
           "onset": len(onset), "onset_final": sum(1 for b in onset if b in finals), "warmup": warmup_s}
    _rows(bench, out)
    return out


def _rows(bench: Bench, out: dict) -> None:
    lags, n = out["lags"], out["ended"]
    worst = max(lags) if lags else float("inf")
    p50 = statistics.median(lags) if lags else 0.0
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else 0.0
    baseline = out["open"] * 3600 // FORMER_STALE_AFTER
    bench.add(
        Row("polling", f"{out['open'] // 1000}k open, 1%/min ending, no webhooks: ending -> final here",
            f"p50 {p50:.1f} / p99 {p99:.1f} / max {worst:.1f} s", f"every one <= {MAX_LAG_S:g} s",
            out["missed"] == 0 and worst <= MAX_LAG_S,
            f"{n:,} endings in the window (after {out['warmup']:g} s of endings), {out['missed']} not final by its "
            f"end; onset from quiet: {out['onset_final']:,} of the first {out['onset']:,} endings found (the rest "
            "are the backstop's); "
            f"{out['per_ended']:.2f} retrieves per batch ended in the window; discovery {out['counters']}"),
        Row("polling", "gateway calls an hour beyond the ended batches' own retrieves",
            f"{out['per_hour']:,.0f}/h vs {baseline:,}/h", f"<= {CALLS_PER_HOUR:,}/h",
            out["per_hour"] <= CALLS_PER_HOUR,
            f"{out['list_calls']:,} list calls and {out['beyond'] - out['list_calls']:,} backstop retrieves "
            f"({out['swept']} swept) in {out['minutes']:.1f} min, scaled to an hour; baseline (computed): the "
            f"former sweep, every open batch every {FORMER_STALE_AFTER} s"),
    )
