"""Compare the service's reconciled state with the sandbox's truth, batch by batch.

Convergence polls only the batches not yet equal to their truth; the final
pass reads every batch, its stored events and its ledger contribution, and
builds the numbers of ``chaos.json``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

TERMINAL = {"completed", "failed", "cancelled", "expired"}
REQUIRED_FAULTS = ("duplicate", "out_of_order", "replay_in_window", "replay_out_of_window", "tampered_body",
                   "wrong_secret", "missing_headers", "stale_timestamp", "oversize", "malformed_json",
                   "random_bytes", "header_fuzz", "worker_sigkill", "redis_restart", "redis_unreachable",
                   "retrieve_500", "retrieve_429", "retrieve_slow", "drop", "lost_terminal", "secret_rotation",
                   # correctly signed hostile traffic (signed_attacks.py)
                   "colliding_ids", "batch_flood", "poison_value", "poison_fallback", "forged_terminal")
MAX_BATCH_EVENTS = 100  # AISTATS_MAX_BATCH_EVENTS as the stack runs it (the default)


class Reader:
    """GETs against the query API and the sandbox's truth, pooled."""

    def __init__(self, stack) -> None:
        self.stack = stack
        self.api = httpx.Client(base_url=stack.web_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=30)
        self.sandbox = httpx.Client(base_url=stack.sandbox_url, headers={"Authorization": f"Bearer {stack.api_key}"},
                                    timeout=30)

    def truth(self, batch_id: str) -> dict:
        resp = self.sandbox.get(f"/_sandbox/batches/{batch_id}")
        resp.raise_for_status()
        return resp.json()

    def ours(self, batch_id: str) -> dict | None:
        try:
            resp = self.api.get(f"/batches/{batch_id}")
        except httpx.HTTPError:
            return None
        return resp.json() if resp.status_code == 200 else None

    def event_ids(self, batch_id: str) -> set[str] | None:
        try:
            resp = self.api.get(f"/batches/{batch_id}/events")
        except httpx.HTTPError:
            return None
        return {e["id"] for e in resp.json()["data"]} if resp.status_code == 200 else set()

    def close(self) -> None:
        self.api.close()
        self.sandbox.close()


def status_equal(truth: dict, ours: dict | None) -> bool:
    return bool(ours) and ours.get("status") == {"canceled": "cancelled"}.get(truth["status"], truth["status"]) \
        and ours.get("request_counts") == truth["request_counts"]


def billing_equal(truth: dict, ours: dict | None) -> bool:
    billing = (ours or {}).get("billing") or {}
    return billing.get("state") == truth["billing"]["state"] and billing.get("total_nanos") == truth["billing"]["total_nanos"]


def _check(reader: Reader, batch_id: str) -> bool:
    try:
        truth = reader.truth(batch_id)
    except httpx.HTTPError:
        return False
    ours = reader.ours(batch_id)
    return truth["status"] in TERMINAL and status_equal(truth, ours) and billing_equal(truth, ours)


def converge(reader: Reader, batch_ids: list[str], deadline: float, on_round=None) -> float | None:
    """Poll until every batch equals its truth; return when (monotonic), or None at the deadline."""
    waiting = set(batch_ids)
    with ThreadPoolExecutor(max_workers=8) as pool:
        while waiting:
            ids = sorted(waiting)
            for batch_id, done in zip(ids, pool.map(lambda b: _check(reader, b), ids)):
                if done:
                    waiting.discard(batch_id)
            if on_round:
                on_round(waiting)
            if not waiting:
                break
            if time.monotonic() > deadline:
                return None
            time.sleep(1.0)
    return time.monotonic()


def _diagnose(stack, batch_id: str) -> dict:
    """Say what holds a batch back: its pending job slot, that job's status, its lock."""
    redis, p = stack.redis(), stack.prefix
    pending = redis.get(f"{p}:pending:{batch_id}")
    status = redis.hget(f"rq:job:{pending.decode()}", "status") if pending else None
    return {"pending_job": pending.decode() if pending else None,
            "pending_ttl": redis.ttl(f"{p}:pending:{batch_id}"),
            "pending_job_status": status.decode() if status else None,
            "lock_ttl_ms": redis.pttl(f"{p}:lock:{batch_id}"),
            "open_score": redis.zscore(f"{p}:open", batch_id)}


def final_pass(reader: Reader, stack, batches: dict, record) -> dict:
    """Read every batch, its events and its ledger share; return the comparison numbers."""
    ids = sorted(batches)

    def one(batch_id: str):
        return batch_id, reader.truth(batch_id), reader.ours(batch_id), reader.event_ids(batch_id)

    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = list(pool.map(one, ids))
    contrib = {k.decode(): int(v.split(b"|", 1)[0]) for k, v in
               stack.redis().hgetall(f"{stack.prefix}:ledger:contrib").items()}
    acked_by_batch: dict[str, set[str]] = {}
    for event_id, batch_id in record.acked.items():
        acked_by_batch.setdefault(batch_id, set()).add(event_id)
    out = {"status_match": 0, "billing_match": 0, "not_converged": [], "lost_events": [], "over_billed": [],
           "truth_nanos": 0, "by_status": {}, "sources": {}, "by_provider": {}, "partial_charges": 0,
           "partial_charge_nanos": 0}
    for batch_id, truth, ours, stored in rows:
        st_ok, bill_ok = status_equal(truth, ours), billing_equal(truth, ours)
        out["status_match"] += st_ok
        out["billing_match"] += bill_ok
        out["by_status"][truth["status"]] = out["by_status"].get(truth["status"], 0) + 1
        out["by_provider"][truth["provider"]] = out["by_provider"].get(truth["provider"], 0) + 1
        if truth["billing"]["state"] == "settled" and truth["request_counts"]["completed"] < (
                truth["request_counts"]["total"] or 0):  # charged for part of the batch (charged_partial_success)
            out["partial_charges"] += 1
            out["partial_charge_nanos"] += truth["billing"]["total_nanos"]
        source = (ours or {}).get("source", "missing")
        out["sources"][source] = out["sources"].get(source, 0) + 1
        if not (st_ok and bill_ok):
            out["not_converged"].append({"id": batch_id, "faults": batches[batch_id].faults,
                                         "redis": _diagnose(stack, batch_id),
                                         "truth": {"status": truth["status"], "billing": truth["billing"]["state"],
                                                   "nanos": truth["billing"]["total_nanos"],
                                                   "counts": truth["request_counts"]},
                                         "ours": {k: (ours or {}).get(k) for k in ("status", "request_counts", "source")}
                                         | {"billing": ((ours or {}).get("billing") or {}).get("state"),
                                            "nanos": ((ours or {}).get("billing") or {}).get("total_nanos")}})
        truth_nanos = truth["billing"]["total_nanos"] if truth["billing"]["state"] == "settled" else 0
        out["truth_nanos"] += truth_nanos
        if contrib.get(batch_id, 0) > truth_nanos:
            out["over_billed"].append({"id": batch_id, "ledger": contrib.get(batch_id, 0), "truth": truth_nanos})
        missing = acked_by_batch.get(batch_id, set()) - (stored or set())
        out["lost_events"].extend(sorted(missing))
    # Acked events of batches we do not know (none expected) count as lost if absent.
    for batch_id in set(acked_by_batch) - set(batches):
        out["lost_events"].extend(sorted(acked_by_batch[batch_id] - (reader.event_ids(batch_id) or set())))
    unconverged_acked = [b["id"] for b in out["not_converged"] if b["id"] in acked_by_batch]
    out["acked_but_lost"] = len(out["lost_events"]) + len(unconverged_acked)
    summary = reader.api.get("/billing/summary", params={"group_by": "session_id"}).json()
    out["ledger_nanos"] = summary["total_nanos"]
    out["ledger_groups"] = {g["key"]: g["total_nanos"] for g in summary["groups"]}
    out["ledger_contrib_total"] = sum(contrib.values())
    out["double_billed"] = len(out["over_billed"])
    # A flooded batch must hold no more than the bound; and every batch's events page must answer.
    flooded = [(b, reader.event_ids(b)) for b in record.flooded]
    out["batches_over_limit"] = [b for b, ids in flooded if ids is None or len(ids) > MAX_BATCH_EVENTS]
    out["ledger_over_truth_nanos"] = max(0, out["ledger_nanos"] - out["truth_nanos"])
    out["service_counters"] = {name: {k.decode(): int(v) for k, v in
                                      stack.redis().hgetall(f"{stack.prefix}:m:{name}").items()}
                               for name in ("deliveries", "rejected", "upstream", "sweep")}
    # Records holding an error (a value refused) or still provisional at the end: both must be none.
    out["records_with_error"] = [r[0] for r in rows if (r[2] or {}).get("error")]
    out["provisional_left"] = [r[0] for r in rows if (r[2] or {}).get("source") == "webhook_payload"]
    return out
