"""Phase latency: a storm of terminal deliveries with the gateway 100 ms away, beside the naive job.

The sandbox answers every API call after ``--latency-ms`` (webhooks are not
delayed). Ours: terminal deliveries posted to the receiver, reconciled by the
Procfile's worker command (2 ``rq worker -w rq.worker.SimpleWorker``), each
process running up to ``AISTATS_RECONCILE_CONCURRENCY`` reconciles at once
(workers/drain.py). Baseline, same run, same worker command and count:
one RQ job per delivery doing one retrieve and one ``HSET`` (bench/naive.py),
enqueued at once. Drain = last acknowledgement (or enqueue) -> every batch
final; throughput = batches / (first acknowledgement -> every batch final).
Then the same storm on fresh batches with ``AISTATS_UPSTREAM_RPS`` set: the
most calls the sandbox counted in any one second.
"""

from __future__ import annotations

import time

from rq import Queue, Worker

from . import drive, naive, procs
from .context import Bench, Row
from .deliveries import Templates

TARGET_RATIO = 8.0
WORKERS = 2  # the Procfile's worker processes


def _sandbox(bench: Bench, latency_ms: float) -> tuple[procs.Proc, str]:
    """Start the sandbox with upstream latency; return it and its base URL."""
    return procs.sandbox(bench.api_key, 1, 16, procs.service_env(), bench.folder, delivery_workers=2,
                         extra=["--latency-ms", f"{latency_ms:g}"], name="sandbox-latency")


def _ours(bench: Bench, base_url: str, app_url: str, ids: list[str]) -> dict:
    templates = Templates()
    items = [templates.signed(bench.secret, b, "batch.completed", "batch.completed") for b in ids]
    bench.flush()
    workers = drive.start_workers(bench, WORKERS, base_url, worker_class="rq.SimpleWorker", tag="lat")
    try:
        acks = drive.send_all(app_url, items, threads=8)
        first, last = min(t for t, _ in acks), max(t for t, _ in acks)
        done = drive.wait_final(bench.client(), bench.prefix, ids, timeout=600)
    finally:
        drive.stop_workers(workers)
    return {"n": len(ids), "rate": len(ids) / (done - first), "drain": done - last,
            "non2xx": sum(1 for _, s in acks if not 200 <= s < 300)}


def _capped(bench: Bench, base_url: str, app_url: str, ids: list[str], rps: int) -> dict:
    """The same storm with AISTATS_UPSTREAM_RPS set: the most calls the sandbox saw in any one second."""
    templates = Templates()
    items = [templates.signed(bench.secret, b, "batch.completed", "batch.completed") for b in ids]
    bench.flush()
    env = bench.env(base_url, AISTATS_UPSTREAM_RPS=str(rps))
    workers = [procs.rq_worker(f"rq-cap-{i}", bench.queue, env, bench.folder, worker_class="rq.SimpleWorker")
               for i in range(WORKERS)]
    try:
        deadline = time.monotonic() + 30
        while len(Worker.all(queue=Queue(bench.queue, connection=bench.client()))) < WORKERS:
            if time.monotonic() > deadline:
                raise RuntimeError("rq workers did not register")
            time.sleep(0.05)
        drive.sandbox_json(base_url, bench.api_key, "/_sandbox/reset-stats", "POST")
        acks = drive.send_all(app_url, items, threads=8)
        first = min(t for t, _ in acks)
        done = drive.wait_final(bench.client(), bench.prefix, ids, timeout=600)
    finally:
        drive.stop_workers(workers)
    by_second = drive.sandbox_json(base_url, bench.api_key, "/_sandbox/stats").get("api_calls_by_second", {})
    return {"n": len(ids), "rate": len(ids) / (done - first), "max": max(by_second.values(), default=0),
            "calls": sum(by_second.values())}


def _naive(bench: Bench, base_url: str, ids: list[str]) -> dict:
    bench.flush()
    workers = drive.start_workers(bench, WORKERS, base_url, worker_class="rq.SimpleWorker", tag="naive")
    try:
        queue = Queue(bench.queue, connection=bench.client())
        first = time.time()
        queue.enqueue_many([Queue.prepare_data("bench.naive.naive_reconcile", args=(b,), result_ttl=0)
                            for b in ids])
        last = time.time()
        done = drive.wait_final(bench.client(), naive.PREFIX, ids, timeout=900)
    finally:
        drive.stop_workers(workers)
    return {"n": len(ids), "rate": len(ids) / (done - first), "drain": done - last}


def run(bench: Bench, *, batches: int = 2000, baseline_batches: int = 400, latency_ms: float = 100.0,
        capped_batches: int = 600, rps: int = 50) -> dict:
    """Measure ours on ``batches`` and the naive job on ``baseline_batches`` at ``latency_ms``; add the rows."""
    sandbox, base_url = _sandbox(bench, latency_ms)
    port = procs.free_port()
    app = procs.gunicorn("gunicorn-latency", "app:app", port, bench.env(base_url), bench.folder)
    app_url = f"http://127.0.0.1:{port}/webhooks/aistats"
    try:
        ids = drive.create_batches(base_url, bench.api_key, max(batches, baseline_batches), duration_s=0.5,
                                   threads=32)
        time.sleep(2.0)  # every batch is completed in the sandbox by now (0.5 s at speed 1)
        base = _naive(bench, base_url, ids[:baseline_batches])
        ours = _ours(bench, base_url, app_url, ids[:batches])
        # Fresh batches: every one above is final already and would be skipped without a call.
        capped_ids = drive.create_batches(base_url, bench.api_key, capped_batches, duration_s=0.5, threads=32)
        time.sleep(2.0)
        capped = _capped(bench, base_url, app_url, capped_ids, rps)
    finally:
        app.stop()
        sandbox.stop()
    ratio = ours["rate"] / base["rate"] if base["rate"] else 0.0
    bench.add(
        Row("latency", f"naive job (retrieve + HSET), {WORKERS} proc, {latency_ms:g} ms upstream",
            f"{base['rate']:,.1f}/s", note=f"{base['n']} batches, drain {base['drain']:.1f} s after the last enqueue"),
        Row("latency", f"ours, {WORKERS} proc, {latency_ms:g} ms upstream: batches final/s (ratio)",
            f"{ours['rate']:,.1f}/s ({ratio:.1f}x)", f">= {TARGET_RATIO:g}x naive",
            ratio >= TARGET_RATIO and ours["non2xx"] == 0,
            f"{ours['n']} terminal deliveries; drain {ours['drain']:.1f} s after the last ack; "
            f"{ours['non2xx']} non-2xx acks"),
    )
    bench.add(Row("latency", f"AISTATS_UPSTREAM_RPS={rps}: most gateway calls seen in one second",
                  f"{capped['max']}", f"<= {rps}", capped["max"] <= rps,
                  f"{capped['n']} terminal deliveries, {capped['calls']} calls, {capped['rate']:,.1f} batches/s; "
                  "counted by the sandbox per wall-clock second"))
    return {"naive": base, "ours": ours, "ratio": ratio, "capped": capped}
