"""The verdict: ``chaos.json`` and the table printed at the end of a run."""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

from .verify import REQUIRED_FAULTS

# --failover replaces the one-Redis restart and stall with a primary SIGKILL + promotion and a replica stall.
FAILOVER_FAULTS = {"redis_restart": "primary_failover", "redis_unreachable": "replica_stall"}


def required_faults(opts) -> list[str]:
    if not getattr(opts, "failover", False):
        return list(REQUIRED_FAULTS)
    return [FAILOVER_FAULTS.get(kind, kind) for kind in REQUIRED_FAULTS]


def build_result(opts, stack, record, creator, schedule, verdict: dict, converge_seconds, start: float) -> dict:
    total = len(creator.batches)
    faults = dict(sorted(record.faults.items()))
    missing = [kind for kind in required_faults(opts) if not faults.get(kind)]
    twice = {e: n for e, n in record.accepted_twice.items() if n > 1}
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
                   f"Python {platform.python_version()}",
        "mode": "quick" if opts.quick else "full",
        "config": {k: getattr(opts, k) for k in ("batches", "window", "speed", "workers", "side_workers",
                                                  "web_workers", "tolerance",
                                                  "stale_after", "sweep_interval", "outage", "hostile_rate",
                                                  "appendfsync", "seed", "rates", "worker_class")} | {"cron": stack.cron_mode}
                  | ({"redis": "primary + replica + 3 sentinels", "min_replicas": opts.min_replicas}
                     if getattr(opts, "failover", False) else {}),
        "deliveries_sent": record.sent,
        "acknowledged": record.acknowledged,
        "rejected": dict(record.rejected.most_common()),
        "hostile": dict(sorted(record.hostile.items())),
        "faults": faults,
        "faults_missing": missing,
        "batches_total": total,
        "batches_by_status": verdict["by_status"],
        "batches_by_provider": verdict["by_provider"],
        "partial_charges": verdict["partial_charges"],
        "partial_charge_nanos": verdict["partial_charge_nanos"],
        "status_match": verdict["status_match"],
        "billing_match": verdict["billing_match"],
        "ledger_nanos": verdict["ledger_nanos"],
        "ledger_contrib_total": verdict["ledger_contrib_total"],
        "truth_nanos": verdict["truth_nanos"],
        "ledger_groups": verdict["ledger_groups"],
        "events_acknowledged": len(record.acked),
        "acked_but_lost": verdict["acked_but_lost"],
        "lost_events": verdict["lost_events"][:50],
        "forged_accepted": len(record.forged_accepted),
        "forged_examples": record.forged_accepted[:10],
        "double_billed": verdict["double_billed"],
        "over_billed": verdict["over_billed"][:20],
        "ledger_over_truth_nanos": verdict["ledger_over_truth_nanos"],
        "dedupe_failures": len(twice),
        "batches_over_limit": len(verdict["batches_over_limit"]),
        "records_with_error": verdict["records_with_error"][:20],
        "provisional_left": verdict["provisional_left"][:20],
        "batches_flooded": len(record.flooded),
        "unexpected_5xx": len(record.server_errors),
        "unexpected_5xx_examples": record.server_errors[:10],
        "record_sources": verdict["sources"],
        "service_counters": verdict["service_counters"],
        "not_converged": verdict["not_converged"][:20],
        **verdict.get("handlers", {}),
        **verdict.get("forwarding", {}),
        **verdict.get("archive", {}),
        **verdict.get("alerts", {}),
        "converge_seconds": converge_seconds,
        "killed_mid_job": schedule.killed_mid_job,
        "process_exits": {name: p.unexpected_exits for name, p in stack.procs.items() if p.unexpected_exits},
        "creator": {"create_errors": creator.create_errors, "track_retries": creator.track_retries},
        "timeline": record.timeline,
        "elapsed_seconds": round(time.monotonic() - start, 1),
    }
    failures = []
    if result["acked_but_lost"]:
        failures.append("acked_but_lost")
    if result["forged_accepted"]:
        failures.append("forged_accepted")
    if result["double_billed"] or result["ledger_over_truth_nanos"]:
        failures.append("double_billed")
    if result["ledger_nanos"] != result["truth_nanos"]:
        failures.append("ledger_total != truth_total")
    if converge_seconds is None or result["status_match"] != total or result["billing_match"] != total:
        failures.append("not converged within the timeout")
    if missing:
        failures.append(f"faults not exercised: {', '.join(missing)}")
    if result["batches_over_limit"]:
        failures.append("a batch stored more events than AISTATS_MAX_BATCH_EVENTS")
    if result["records_with_error"] or result["provisional_left"]:
        failures.append("records left with an error or provisional (webhook payload) state")
    if result.get("handler_runs_missing") or result.get("handler_runs_duplicated") or result.get("handler_jobs_left"):
        failures.append("a transition's handler ran not exactly once")
    if result.get("forward_missing") or result.get("forward_unverified") or result.get("forward_out_of_order"):
        failures.append("a forwarded transition missing, unverified or out of order")
    if "archive_expected" in result and (result["archive_missing"] or result["archive_mismatched"]
                                         or result["archive_duplicated"]):
        failures.append("an ended batch's file not archived whole, or archived twice")
    if "alert_firing" in result and (result["alert_firing"], result["alert_resolved"], result["alert_unverified"]) \
            != (1, 1, 0):
        failures.append("a forced dead letter did not give exactly one alert and one resolve")
    if opts.strict and (result["dedupe_failures"] or result["unexpected_5xx"]):
        failures.append("dedupe failures or unexpected 5xx (--strict)")
    result["failures"] = failures
    result["passed"] = not failures
    return result


def _row(name: str, value, note: str = "") -> str:
    return f"| {name:<26} | {str(value):<22} | {note}"


def print_table(r: dict) -> None:
    n = r["batches_total"]
    rows = [
        _row("batches", n, ", ".join(f"{k} {v}" for k, v in sorted(r["batches_by_status"].items()))),
        _row("providers", len(r["batches_by_provider"]),
             ", ".join(f"{k} {v}" for k, v in sorted(r["batches_by_provider"].items()))),
        _row("partial charges", r["partial_charges"], f"{r['partial_charge_nanos']} nanos: batches charged for part"),
        _row("deliveries sent", r["deliveries_sent"], "sandbox via proxy + hostile + replays"),
        _row("acknowledged (2xx)", r["acknowledged"], f"{r['events_acknowledged']} distinct legit event ids"),
        _row("rejected", sum(r["rejected"].values()),
             ", ".join(f"{k}: {v}" for k, v in list(r["rejected"].items())[:8])),
        _row("status match", f"{r['status_match']}/{n}"),
        _row("billing match", f"{r['billing_match']}/{n}"),
        _row("ledger nanos", r["ledger_nanos"], f"truth {r['truth_nanos']}"),
        _row("acked_but_lost", r["acked_but_lost"]),
        _row("forged_accepted", r["forged_accepted"], f"of {sum(r['hostile'].values())} hostile requests"),
        _row("double_billed", r["double_billed"], f"ledger over truth by {r['ledger_over_truth_nanos']} nanos"),
        _row("dedupe failures", r["dedupe_failures"], "event ids answered 202 twice"),
        _row("batches over limit", r["batches_over_limit"], f"of {r['batches_flooded']} flooded past the bound"),
        _row("error/provisional left", len(r["records_with_error"]) + len(r["provisional_left"]),
             "records with error, or still webhook_payload"),
        _row("unexpected 5xx", r["unexpected_5xx"], "5xx other than 503 store_unavailable"),
        _row("handler_runs_missing", r.get("handler_runs_missing"),
             f"of {r.get('transitions')} transitions in the change feed (counting handler)"),
        _row("handler_runs_duplicated", r.get("handler_runs_duplicated"),
             f"{r.get('handler_runs')} runs; {r.get('handler_jobs_left')} handler jobs left"),
        _row("forward_missing", r.get("forward_missing"),
             f"{r.get('forward_delivered')} delivered; {r.get('forward_refused_while_down')} refused while down; "
             f"{r.get('forward_jobs_left')} forwarding jobs left"),
        _row("forward_unverified", r.get("forward_unverified"), f"of {r.get('forward_requests')} requests"),
        _row("forward_out_of_order", r.get("forward_out_of_order"), "batches whose transitions arrived out of order"),
        _row("forward to hang/drip", f"{r.get('forward_hostile_requests')}",
             f"requests they got; {r.get('forward_hostile_timeouts')} attempts timed out, "
             f"{r.get('forward_hostile_paused')} skipped while paused"),
        _row("archive missing", r.get("archive_missing"),
             f"of {r.get('archive_expected')} files of ended batches; {r.get('archive_mismatched')} with another "
             f"sha256, {r.get('archive_duplicated')} written twice, {r.get('archive_jobs_left')} archive jobs left"),
        _row("forced dead letter", f"{r.get('alert_firing')} alert, {r.get('alert_resolved')} resolve",
             f"one of each expected; {r.get('alert_unverified')} alert requests unverified"),
        _row("converge seconds", r["converge_seconds"], "after the faults stopped"),
        _row("process exits", r["process_exits"] or 0, "restarted by the harness"),
        _row("elapsed seconds", r["elapsed_seconds"]),
    ]
    width = 80
    print("\n" + "-" * width)
    print(f"chaos ({r['mode']}) {r['date']} on {r['machine']}")
    print("-" * width)
    print("\n".join(rows))
    print("| faults: " + ", ".join(f"{k} {v}" for k, v in r["faults"].items()))
    if r["faults_missing"]:
        print("| faults NOT exercised: " + ", ".join(r["faults_missing"]))
    for item in r["not_converged"][:5]:
        print(f"| not converged: {item}")
    for item in r["unexpected_5xx_examples"][:3]:
        print(f"| unexpected 5xx: {item}")
    print("-" * width)
    print("PASSED" if r["passed"] else "FAILED: " + "; ".join(r["failures"]), flush=True)


def write_json(result: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "chaos.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path
