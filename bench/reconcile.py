"""Phase 2, reconcile: batches reconciled per second end to end, beside the naive job and RQ's no-op floor.

Against the sandbox gateway, with 1 and 2 stock ``rq worker`` processes of
the same class, in the same run: first RQ's own throughput on a no-op job
(the floor any job pays: dequeue, fork or not, bookkeeping), then terminal
deliveries for existing sandbox batches posted to the receiver, timed from
the first acknowledgement until every batch is final in the store (what the
query API serves). The baseline, same workers, same batches: the naive job
(bench/naive.py: one retrieve and one HSET per delivery, enqueued at once);
the target is 0.8 of its rate (the no-op's floor is below the retrieve
itself). Then the latency from one acknowledgement to its visible final
state, with idle workers.
"""

from __future__ import annotations

import statistics
import time

import httpx
from rq import Queue

from . import drive, naive, procs
from .context import Bench, Row
from .deliveries import Templates

TARGET_RATIO = 0.8  # of the naive job's rate
CLASSES = {"rq.Worker": "forking Worker (rq default)", "rq.SimpleWorker": "SimpleWorker"}


def _noop_rate(bench: Bench, count: int) -> float:
    """Enqueue ``count`` no-op jobs at once; return jobs finished per second."""
    queue = Queue(bench.queue, connection=bench.client())
    finished = queue.finished_job_registry
    before = finished.count
    jobs = [Queue.prepare_data("bench.noop.noop", result_ttl=600) for _ in range(count)]
    started = time.time()
    queue.enqueue_many(jobs)
    deadline = time.monotonic() + 120
    while finished.count - before < count:
        if time.monotonic() > deadline:
            raise TimeoutError("no-op jobs did not finish")
        time.sleep(0.02)
    return count / (time.time() - started)


def _naive_rate(bench: Bench, batch_ids: list[str]) -> float:
    """Enqueue the naive job (retrieve + HSET) for every batch at once; return batches done per second."""
    queue = Queue(bench.queue, connection=bench.client())
    started = time.time()
    queue.enqueue_many([Queue.prepare_data("bench.naive.naive_reconcile", args=(b,), result_ttl=0)
                        for b in batch_ids])
    done = drive.wait_final(bench.client(), naive.PREFIX, batch_ids, timeout=300)
    return len(batch_ids) / (done - started)


def _reconcile_rate(bench: Bench, app_url: str, batch_ids: list[str]) -> tuple[float, int]:
    """Deliver one terminal event per batch; return batches final per second and non-2xx count."""
    templates = Templates()
    items = [templates.signed(bench.secret, b, "batch.completed", "batch.completed") for b in batch_ids]
    acks = drive.send_all(app_url, items, threads=8)
    first_ack = min(t for t, _ in acks)
    last = drive.wait_final(bench.client(), bench.prefix, batch_ids, timeout=300)
    return len(batch_ids) / (last - first_ack), sum(1 for _, s in acks if not 200 <= s < 300)


def _latency(bench: Bench, app_url: str, batch_ids: list[str]) -> list[float]:
    """Acknowledgement-to-visible seconds for one delivery at a time (idle workers)."""
    templates = Templates()
    client = bench.client()
    out = []
    with httpx.Client(timeout=30) as http:
        for batch_id in batch_ids:
            body, headers = templates.signed(bench.secret, batch_id, "batch.completed", "batch.completed")
            http.post(app_url, content=body, headers=headers).raise_for_status()
            acked = time.perf_counter()
            key = f"{bench.prefix}:b:{batch_id}"
            deadline = acked + 30
            while client.hget(key, "final") != b"1":
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"{batch_id} not visible")
                time.sleep(0.0005)
            out.append(time.perf_counter() - acked)
            time.sleep(0.03)
    return out


def pct(values: list[float], q: float) -> float:
    """Return the q-quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def run(bench: Bench, *, noop_jobs: int = 500, batches: int = 300, samples: int = 60,
        classes: tuple[str, ...] = ("rq.Worker", "rq.SimpleWorker")) -> dict:
    """Measure every worker class with 1 and 2 processes; add the rows; return the numbers."""
    sandbox, base_url = procs.sandbox(bench.api_key, speed=1, seed=6, env=procs.service_env(), log_dir=bench.folder)
    port = procs.free_port()
    app = procs.gunicorn("gunicorn-reconcile", "app:app", port, bench.env(base_url), bench.folder)
    app_url = f"http://127.0.0.1:{port}/webhooks/aistats"
    raw: dict = {}
    try:
        ids = drive.create_batches(base_url, bench.api_key, batches + samples, duration_s=0.5)
        time.sleep(1.0)  # every batch is completed in the sandbox by now (0.5 s at speed 1)
        for cls in classes:
            for count in (1, 2):
                bench.flush()
                workers = drive.start_workers(bench, count, base_url, worker_class=cls, tag=f"{count}")
                try:
                    noop = _noop_rate(bench, noop_jobs * count)
                    base = _naive_rate(bench, ids[:batches])
                    rate, failed = _reconcile_rate(bench, app_url, ids[:batches])
                    lat = _latency(bench, app_url, ids[batches:]) if count == 1 else []
                finally:
                    drive.stop_workers(workers)
                raw[(cls, count)] = {"noop": noop, "naive": base, "rate": rate, "non2xx": failed, "latency": lat}
                _rows(bench, cls, count, noop, base, rate, failed, lat)
    finally:
        app.stop()
        sandbox.stop()
    return raw


def _rows(bench: Bench, cls: str, count: int, noop: float, base: float, rate: float, failed: int,
          lat: list[float]) -> None:
    name = CLASSES.get(cls, cls)
    ratio = rate / base if base else 0.0
    bench.add(
        Row("reconcile", f"{name}, {count} proc: RQ no-op jobs/s / naive job (retrieve + HSET)/s",
            f"{noop:,.0f}/s / {base:,.1f}/s"),
        Row("reconcile", f"{name}, {count} proc: batches reconciled/s (ratio to naive)", f"{rate:,.1f}/s ({ratio:.2f}x)",
            f">= {TARGET_RATIO:.1f}x naive", ratio >= TARGET_RATIO and failed == 0,
            f"ack -> final in store; {failed} non-2xx acks" if failed else "ack -> final in store"),
    )
    if lat:
        bench.add(Row("reconcile", f"{name}: ack -> visible p50 / p99 (idle)",
                      f"{pct(lat, 0.5) * 1000:.0f} / {pct(lat, 0.99) * 1000:.0f} ms",
                      note=f"{len(lat)} single deliveries, mean {statistics.mean(lat) * 1000:.0f} ms"))
