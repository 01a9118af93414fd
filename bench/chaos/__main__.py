"""``make chaos`` / ``make chaos-quick``: run the real stack under faults, compare with the truth.

    python -m bench.chaos [--quick] [--batches N] [--window S] [--rate drop=0.05,...] [--out DIR]

Exit status 0 only when no acknowledged event was lost, no forged request
was accepted, nothing was billed twice, every fault kind was exercised, and
every batch equals the sandbox's truth within ``--converge-timeout`` seconds
after the faults stop. ``chaos.json`` goes to ``$CHAOS_OUT`` (default
``bench/results/``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from .faults import Schedule
from . import archive_check
from .alert_check import Alerts
from .forward_check import Forwarding
from .hostile import Hostile
from .proxy import TapProxy
from .record import Record
from .slow import SlowClients
from .report import build_result, print_table, write_json
from .stack import ROOT, Stack
from .traffic import Creator
from aistats_hooks.effects import forwarding

from . import handler_runs
from .verify import Reader, converge, final_pass

DEFAULT_RATES = {"duplicate": 0.15, "out_of_order": 0.10, "drop": 0.06, "bad_signature": 0.05, "delay": 0.04,
                 "replay": 0.05, "retrieve_500": 0.05, "retrieve_429": 0.05, "retrieve_slow": 0.02,
                 # The gateway never sends the terminal webhook (billing blocked on the pass that saw the end).
                 "lost_terminal": 0.05}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="CI size: a few hundred batches, under 3 minutes")
    p.add_argument("--batches", type=int, help="batches to create (default 2000; 300 with --quick)")
    p.add_argument("--window", type=float, help="seconds of load and faults (default 300; 70 with --quick)")
    p.add_argument("--rate", default="", metavar="NAME=RATE,...", help="sandbox fault rates per batch, "
                   f"overriding {','.join(f'{k}={v}' for k, v in DEFAULT_RATES.items())}")
    p.add_argument("--hostile-rate", type=float, default=8.0, help="hostile requests per second")
    p.add_argument("--speed", type=float, default=60.0, help="sandbox simulated seconds per real second")
    p.add_argument("--min-duration", type=float, default=60.0, help="simulated seconds (shortest batch)")
    p.add_argument("--max-duration", type=float, default=540.0, help="simulated seconds (longest batch)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--slow-clients", type=int, default=200, help="slow connections held against gunicorn")
    p.add_argument("--workers", type=int, default=3, help="RQ worker processes (at least 2)")
    p.add_argument("--side-workers", type=int, default=1,
                   help="RQ workers for handlers, forwarding and the archive only (0: every worker serves every queue)")
    p.add_argument("--web-workers", type=int, default=2)
    p.add_argument("--worker-class", default="rq.worker.SimpleWorker",
                   help="rq worker -w CLASS (default: the Procfile's SimpleWorker; '' for RQ's forking Worker)")
    p.add_argument("--tolerance", type=int, default=30, help="AISTATS_WEBHOOK_TOLERANCE")
    p.add_argument("--stale-after", type=int, default=5, help="AISTATS_STALE_AFTER")
    p.add_argument("--sweep-interval", type=int, default=5, help="AISTATS_SWEEP_INTERVAL")
    p.add_argument("--outage", type=float, default=10.0, help="seconds Redis stays SIGSTOPped")
    p.add_argument("--slow-seconds", type=float, default=1.5, help="retrieve_slow delay (real seconds)")
    p.add_argument("--appendfsync", default="always", choices=("always", "everysec", "no"))
    p.add_argument("--converge-timeout", type=float, default=120.0)
    p.add_argument("--failover", action="store_true", help="Redis as primary + replica + 3 Sentinels; SIGKILL "
                   "the primary mid-run instead of restarting one Redis (make chaos-failover)")
    p.add_argument("--min-replicas", type=int, default=1, help="AISTATS_MIN_REPLICAS with --failover")
    p.add_argument("--strict", action="store_true", help="also fail on unexpected 5xx and dedupe failures")
    p.add_argument("--out", default=os.environ.get("CHAOS_OUT") or str(ROOT / "bench" / "results"))
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, AOF) even on success")
    opts = p.parse_args(argv)
    opts.batches = opts.batches or (300 if opts.quick else 2000)
    opts.window = opts.window or (70.0 if opts.quick else 300.0)
    opts.workers = max(opts.workers, 2)
    opts.rates = dict(DEFAULT_RATES)
    for item in filter(None, opts.rate.split(",")):
        name, _, value = item.partition("=")
        if name.strip() not in DEFAULT_RATES:
            p.error(f"unknown fault {name!r}; known: {', '.join(DEFAULT_RATES)}")
        opts.rates[name.strip()] = float(value)
    return opts


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def sandbox_faults(stack) -> dict[str, int]:
    stats = httpx.get(stack.sandbox_url + "/_sandbox/stats", headers={"Authorization": f"Bearer {stack.api_key}"},
                      timeout=30).json()
    return stats.get("faults_injected", {})


def run(opts) -> bool:
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="aistats-chaos-"))
    record, stack = Record(), Stack(opts, workdir)
    proxy = creator = hostile = schedule = reader = slow = forward = alerts = None
    passed = False
    try:
        print(f"chaos: {opts.batches} batches over {opts.window:g}s; stack in {workdir}; cron: {stack.cron_mode}",
              flush=True)
        forward = Forwarding(stack)  # before the processes start: their settings name it
        alerts = Alerts(stack)
        stack.start()
        if not handler_runs.wait_for_groups(stack, (handler_runs.GROUP, forwarding.GROUP)):
            record.note("the workers did not create the change feed's consumer groups within 60 s")
        front = "nginx (deploy/nginx.conf) + gunicorn" if stack.nginx is not None else "gunicorn (no nginx installed)"
        record.note(f"stack up: redis-server (AOF), sandbox, {front}, "
                    f"{opts.workers} rq workers + {opts.side_workers} for side effects, {stack.cron_mode}")
        proxy = TapProxy(stack.web_url, [stack.old_secret, stack.new_secret], record, seed=opts.seed).start()
        creator = Creator(stack, opts, record, proxy.url)
        hostile = Hostile(stack, opts, record, creator)
        schedule = Schedule(stack, opts, record, creator)
        start = time.monotonic()
        load = [threading.Thread(target=creator.run, name="chaos-create", daemon=True),
                threading.Thread(target=hostile.run, name="chaos-hostile", daemon=True)]
        for thread in load:
            thread.start()
        if stack.nginx is not None:
            slow = SlowClients(stack, record, count=opts.slow_clients, seconds=opts.window + 60).start()
        else:  # slow clients are the proxy's to absorb (deploy/nginx.conf); without one there is nothing to test
            record.note("no nginx installed: the run holds no slow clients (apt-get install -y nginx)")
        forward.schedule_outages(opts.window, record)
        timeline = schedule.start(start)[0]
        timeline.join()
        load[0].join()
        time.sleep(max(0.0, start + opts.window - time.monotonic()))
        hostile.stop.set()
        load[1].join(30)
        slow.stop()
        faults_stop = time.monotonic()
        record.note(f"faults stopped; {len(creator.batches)} batches created; waiting for convergence")
        reader = Reader(stack)
        last = [0.0]

        def progress(waiting: set) -> None:
            if time.monotonic() - last[0] > 10:
                if len(waiting) <= 3:
                    killed = set(schedule.killed_mid_job)
                    waiting = {b + (" (its job was SIGKILLed)" if b in killed else "") for b in waiting}
                    record.note(f"waiting for {', '.join(sorted(waiting))}")
                last[0] = time.monotonic()
                record.note(f"{len(waiting)} batches not yet equal to the truth")

        done = converge(reader, list(creator.batches), faults_stop + opts.converge_timeout, progress)
        converge_seconds = None if done is None else round(done - faults_stop, 1)
        record.note(f"converged after {converge_seconds}s" if done else "NOT converged at the deadline")
        for kind, count in sandbox_faults(stack).items():
            record.fault({"replay": "replay_in_window", "bad_signature": "sandbox_bad_signature"}.get(kind, kind), count)
        verdict = final_pass(reader, stack, creator.batches, record)
        record.note("waiting for handler runs to drain")
        waited = [0.0]

        def handler_wait(left: int) -> None:
            if time.monotonic() - waited[0] > 15:
                waited[0] = time.monotonic()
                record.note(f"{left} handler jobs still to run")

        verdict["handlers"] = handler_runs.check(stack, on_wait=handler_wait)

        def forward_wait(left: int) -> None:
            if time.monotonic() - waited[0] > 15:
                waited[0] = time.monotonic()
                record.note(f"{left} forwarding jobs still to run")

        verdict["forwarding"] = forward.check(on_wait=forward_wait)

        def archive_wait(left: int) -> None:
            if time.monotonic() - waited[0] > 15:
                waited[0] = time.monotonic()
                record.note(f"{left} archive jobs still to run")

        verdict["archive"] = archive_check.check(stack, reader, list(creator.batches), on_wait=archive_wait)
        record.note("forcing one dead letter: waiting for its alert and its resolve")
        verdict["alerts"] = alerts.check()
        result = build_result(opts, stack, record, creator, schedule, verdict, converge_seconds, began)
        print_table(result)
        path = write_json(result, Path(opts.out))
        print(f"chaos: wrote {path}", flush=True)
        passed = result["passed"]
    finally:
        if slow is not None:
            slow.stop()
        for part in (schedule, hostile, creator):
            if part is not None:
                part.stop.set()
        for closer in (reader, creator, proxy, forward, alerts):
            try:
                if closer is not None:
                    closer.close() if hasattr(closer, "close") else closer.stop()
            except Exception:  # noqa: BLE001
                pass
        stack.stop()
        if passed and not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"chaos: logs and data kept in {workdir}", flush=True)
    return passed


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    opts = parse_args(argv)
    return 0 if run(opts) else 1


if __name__ == "__main__":
    sys.exit(main())
