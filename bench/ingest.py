"""Phase 1, ingest: signed deliveries acknowledged per second, p50/p99, with bare Flask beside them.

Both apps run under the Procfile's own web command (stock gunicorn, gthread) and
take the same load from wrk (16 connections). The targets are floors: at least
500 acks/s, p99 at most 50 ms, every answer 2xx; bare Flask's figures are for
reference. Two loads: unique batches (one terminal event each) and a progress
storm (ten events per batch). After each run against the receiver, Redis is
checked for the events and jobs it must hold.
"""

from __future__ import annotations

import time

from rq import Queue

from aistats_hooks.store import Store

from . import deliveries, loadgen, procs
from .context import Bench, Row
from .machine import tree_cpu_seconds

SAMPLE = 40

PATH = "/webhooks/aistats"
CONNECTIONS = 16
THREADS = 2
# Pre-signed requests per second of run: above any rate this machine reaches,
# so no delivery is ever sent twice (a repeat would be a cheaper duplicate).
MAX_RATE = 7000
STORM_INTERLEAVE = 8
TARGET_ACKS = 500.0  # acks/s on the 2-core machine, whatever bare Flask does
TARGET_P99_MS = 50.0


def _make(kind: str, secret: str, run: str, count: int):
    if kind == "unique":
        return deliveries.unique(secret, run, count)
    return deliveries.storm(secret, run, count, interleave=STORM_INTERLEAVE)


def _load(bench: Bench, port: int, kind: str, run: str, seconds: float, server_pid: int = 0) -> tuple[dict, int]:
    """Sign a fresh request set, run the load against ``port``; return wrk's result and the set size.

    With ``server_pid`` the result also has the server's CPU per answered request.
    """
    count = int(MAX_RATE * seconds)
    made = _make(kind, bench.secret, run, count)
    url = f"http://127.0.0.1:{port}{PATH}"
    if bench.wrk:
        prefix = bench.folder / f"req-{run}"
        written = loadgen.write_requests(prefix, made, f"127.0.0.1:{port}", PATH, THREADS)
        cpu = tree_cpu_seconds(server_pid) if server_pid else 0.0
        result = loadgen.run_wrk(bench.wrk, url, prefix, seconds=seconds, connections=CONNECTIONS, threads=THREADS)
        for t in range(THREADS):
            prefix.with_name(f"{prefix.name}.{t}").unlink(missing_ok=True)
    else:
        items = list(made)
        written = len(items)
        cpu = tree_cpu_seconds(server_pid) if server_pid else 0.0
        result = loadgen.run_python(url, items, seconds=seconds, connections=CONNECTIONS)
    if server_pid:
        result["cpu_us"] = (tree_cpu_seconds(server_pid) - cpu) / max(result["requests"], 1) * 1e6
    return result, written


def _recorded(bench: Bench, kind: str, run: str) -> dict:
    """Count what the receiver stored: events by outcome, jobs queued, and a sample read back."""
    client = bench.client()
    outcomes = {k.decode(): int(v) for k, v in client.hgetall(f"{bench.prefix}:m:deliveries").items()}
    events = sum(v for k, v in outcomes.items() if k != "duplicate")
    jobs = Queue(bench.queue, connection=client).count
    # Read early batches back through the store: each must hold all its events. (Batch 0 is
    # skipped: wrk draws one request from thread 0's list before the run and never sends it.)
    store = Store(client, bench.settings())
    want = 1 if kind == "unique" else len(deliveries.STORM_KEYS)
    short = [i for i in range(1, SAMPLE + 1) if len(store.events(f"batch_{run}_{i:07d}")) != want]
    return {"events": events, "jobs": jobs, "outcomes": outcomes, "sample_short": len(short)}


def run(bench: Bench, seconds: float = 8.0, rounds: int = 2) -> dict:
    """Run both loads against both apps; add the rows; return the raw numbers."""
    env = bench.env()
    bare_port, app_port = procs.free_port(), procs.free_port()
    bare = procs.procfile_web("gunicorn-bare", "bench.bare_app:app", bare_port, env, bench.folder)
    app = procs.procfile_web("gunicorn-app", "app:app", app_port, env, bench.folder)
    raw: dict = {}
    try:
        for port in (bare_port, app_port):  # warm both: imports, first connections
            _load(bench, port, "unique", f"warm{port}", 2)
        for kind in ("unique", "storm"):
            best: dict = {}
            for round_ in range(rounds):  # alternate bare and receiver; keep each one's best round
                stamp = f"{kind}{round_}{int(time.time())}"
                b, _ = _load(bench, bare_port, kind, f"b{stamp}", seconds, bare.pid)
                bench.flush()
                a, offered = _load(bench, app_port, kind, f"a{stamp}", seconds, app.pid)
                stored_now = _recorded(bench, kind, f"a{stamp}")
                if "bare" not in best or b["rps"] > best["bare"]["rps"]:
                    best["bare"] = b
                if "app" not in best or a["rps"] > best["app"]["rps"]:
                    best["app"], stored = a, stored_now
                bench.flush()
            bare_result, app_result = best["bare"], best["app"]
            raw[kind] = {"bare": bare_result, "app": app_result, "stored": stored, "offered": offered}
            _rows(bench, kind, bare_result, app_result, stored)
    finally:
        app.stop()
        bare.stop()
    return raw


def _rows(bench: Bench, kind: str, bare: dict, app: dict, stored: dict) -> None:
    ratio = app["rps"] / bare["rps"] if bare["rps"] else 0.0
    label = "unique batches" if kind == "unique" else "progress storm (10 ev/batch)"
    tool = "" if app["tool"] == "wrk" else " (python load generator: wrk unavailable)"
    bench.add(
        Row("ingest", f"{label}: bare Flask 202", f"{bare['rps']:,.0f} req/s",
            note=f"p50 {bare['p50_ms']:.2f} ms, p99 {bare['p99_ms']:.2f} ms, "
                 f"gunicorn CPU {bare.get('cpu_us', 0):.0f} us/req{tool}"),
        Row("ingest", f"{label}: receiver acks/s (bare Flask for reference)", f"{app['rps']:,.0f}/s ({ratio:.2f}x bare)",
            f">= {TARGET_ACKS:g}/s", app["rps"] >= TARGET_ACKS,
            f"gunicorn CPU {app.get('cpu_us', 0):.0f} us/req (bare {bare.get('cpu_us', 0):.0f})"),
        Row("ingest", f"{label}: receiver p50 / p99", f"{app['p50_ms']:.2f} / {app['p99_ms']:.2f} ms",
            f"p99 <= {TARGET_P99_MS:g} ms", app["p99_ms"] <= TARGET_P99_MS),
    )
    answered = app["requests"]
    batches = deliveries.batches_in(answered, kind, STORM_INTERLEAVE)
    # Requests still in flight when wrk stops are stored but not counted: up to one per connection.
    stored_ok = (answered - app["non2xx"] <= stored["events"] <= answered + CONNECTIONS
                 and not stored["sample_short"])
    all_2xx = app["non2xx"] == 0 and app["socket_errors"] == 0 and app["wrapped"] == 0
    bench.add(
        Row("ingest", f"{label}: every answer 2xx", f"{answered - app['non2xx']:,}/{answered:,} 2xx",
            "all 2xx", all_2xx,
            f"codes {app['codes']}, socket errors {app['socket_errors']}, repeats {app['wrapped']}"),
        Row("ingest", f"{label}: events recorded in Redis", f"{stored['events']:,} events, {stored['jobs']:,} jobs",
            f"= acks (+<= {CONNECTIONS} in flight)", stored_ok,
            f"~{batches:,} batches touched; outcomes {stored['outcomes']}; "
            f"{SAMPLE - stored['sample_short']}/{SAMPLE} sampled batches read back whole"),
    )
