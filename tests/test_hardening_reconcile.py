"""Hostile values against the worker: amounts, ids, unknown retention, the sweep.

Real Redis, the receiver through Flask's test client, the gateway's retrieve
over real HTTP (tests/upstream.py), RQ's real worker where retries matter.
"""

from __future__ import annotations

import json
import time

import pytest
from rq.registry import ScheduledJobRegistry

from aistats_hooks import reconcile
from aistats_hooks.reconcile import Outcome
from aistats_hooks.sdk import AIStats
from aistats_hooks.store.commit import InvalidRecord, RecordRow
from aistats_hooks.web import create_app
from tests.helpers import make_event, run_worker, signed


@pytest.fixture
def app(settings, worker_env):
    return create_app(settings)


@pytest.fixture
def store(app):
    return app.extensions["aistats"]


@pytest.fixture
def sdk(settings, upstream):
    client = AIStats(settings.api_key, upstream.base_url, timeout=5)
    yield client
    client.close()


def deliver(app, event):
    body, headers = signed(event)
    return app.test_client().post("/webhooks/aistats", data=body, headers=headers)


def batch(batch_id, status="completed", **extra):
    data = make_event(batch_id)["data"]
    data["status"] = status
    data.update(extra)
    return data


def ledger_total(store) -> int:
    return int(store.redis.get(store.keys.ledger_total) or 0)


def last_attempt(store):
    """Run the one scheduled retry now, as its last attempt (RQ has no retries left for it)."""
    registry = ScheduledJobRegistry(queue=store.queue)
    job = store.queue.fetch_job(registry.get_job_ids()[0])
    registry.remove(job)
    job.retries_left = 0
    store.queue.enqueue_job(job)
    run_worker(store)


@pytest.mark.parametrize("forged_status,forged_billing", [
    ("cancelled", {"state": "void", "total_nanos": None, "currency": "usd"}),
    ("completed", {"state": "settled", "total_nanos": 5_000_000, "currency": "usd"}),
])
def test_a_forged_terminal_applied_as_fallback_is_overruled_by_the_next_retrieve(
        app, store, upstream, forged_status, forged_billing):
    # Item 2: the fallback used to leave the record final and labelled `retrieve`, so no retrieve fixed it.
    upstream.answer("b1", (200, batch("b1", "in_progress", billing=None)))
    store.request_reconcile("b1")  # discovery found it in progress
    run_worker(store)
    assert store.get("b1")["source"] == "retrieve"
    upstream.answer("b1", (503, {"error": {"message": "down"}}))
    forged = make_event("b1", f"batch.{forged_status}", status=forged_status, billing=forged_billing)
    assert deliver(app, forged).status_code == 202
    run_worker(store)
    last_attempt(store)
    record = store.get("b1")
    assert record["status"] == forged_status and record["source"] == "webhook_payload"
    assert "b1" in store.due_for_sweep("+inf")  # provisional: the sweep keeps asking the gateway
    assert store.redis.hget(store.keys.record("b1"), "final") == b"0"
    provisional_ledger = ledger_total(store)
    # The gateway answers again: completed and settled for 20250 nanos. It wins, and the ledger moves once.
    upstream.answer("b1", (200, batch("b1")))
    store.request_reconcile("b1")
    run_worker(store)
    record = store.get("b1")
    assert record["status"] == "completed" and record["source"] == "retrieve"
    assert record["billing"]["state"] == "settled" and record["billing"]["total_nanos"] == 20250
    assert ledger_total(store) == 20250 and provisional_ledger != 20250
    assert "b1" not in store.due_for_sweep("+inf")
    # Another forged terminal after the truth changes nothing: the batch is final.
    assert deliver(app, make_event("b1", "batch.cancelled", key="batch.cancelled:2", status="cancelled")).json["job"] == "final"
    assert ledger_total(store) == 20250


def test_an_amount_out_of_range_is_recorded_as_an_error_and_never_moves_the_ledger(store, upstream, sdk):
    # Item 3: each retry used to subtract the old contribution again, and the lock stayed held.
    upstream.answer("b2", (200, batch("b2", "in_progress", billing={"state": "settled", "total_nanos": 1000})))
    assert reconcile.reconcile_batch(store, sdk, "b2") == Outcome.RECONCILED
    assert ledger_total(store) == 1000
    poison = {"state": "settled", "total_nanos": "99999999999999999999"}
    upstream.answer("b2", (200, batch("b2", "in_progress", billing=poison)))
    for _ in range(3):
        assert reconcile.reconcile_batch(store, sdk, "b2") == Outcome.INVALID
        assert ledger_total(store) == 1000
        assert not store.redis.exists(store.keys.lock("b2"))
    record = store.get("b2")
    assert record["error"]["reason"] == "invalid_value" and "total_nanos" in record["error"]["message"]
    assert record["billing"]["total_nanos"] == 1000  # the previous state is kept
    upstream.answer("b2", (200, batch("b2")))
    assert reconcile.reconcile_batch(store, sdk, "b2") == Outcome.RECONCILED
    assert "error" not in store.get("b2") and ledger_total(store) == 20250


def test_commit_checks_every_value_before_its_first_write(store):
    # Item 3, the script itself: a value refused halfway used to leave half a commit behind.
    good = dict(batch("b3"), source="retrieve")
    store.save(reconcile_record(good))
    assert ledger_total(store) == 20250
    row = RecordRow.of(reconcile_record(good))
    for nanos in (10**20, 10**15 + 1):
        bad = RecordRow(**{**row.__dict__, "nanos": nanos, "status": "cancelled"})
        with pytest.raises(InvalidRecord):
            store._commit.call(store.keys, "b3", row=bad)
        assert ledger_total(store) == 20250
        assert store.get("b3")["status"] == "completed"
    with pytest.raises(InvalidRecord):
        RecordRow.of({**reconcile_record(good), "billing": {"state": "settled", "total_nanos": 2**63}})


def reconcile_record(obj: dict) -> dict:
    from aistats_hooks.rules.merge import merge

    return merge(None, obj)


def test_a_run_whose_lock_expired_writes_nothing(store, upstream, sdk):
    # Item 3: a late commit used to regress a completed batch to in_progress.
    upstream.answer("b4", (200, batch("b4", "in_progress", billing=None)))

    def meanwhile(batch_id):
        # The slow run's lock expires and a newer run stores the final state.
        store.redis.delete(store.keys.lock(batch_id))
        store.save(reconcile_record(batch(batch_id)))

    upstream.on_retrieve = meanwhile
    assert reconcile.reconcile_batch(store, sdk, "b4") == Outcome.LOCK_LOST
    upstream.on_retrieve = None
    record = store.get("b4")
    assert record["status"] == "completed" and record["billing"]["total_nanos"] == 20250
    assert ledger_total(store) == 20250


def test_poison_values_from_the_gateway_never_hold_the_lock_or_loop(store, upstream, sdk):
    # Item 4: 700-deep metadata made every later reconcile raise RecursionError with the lock held;
    # Infinity and 1e20 timestamps raised OverflowError / OSError.
    deep: object = "x"
    for _ in range(700):
        deep = {"a": deep}
    upstream.answer("b5", (200, batch("b5", "in_progress", billing=None, metadata=deep)))
    for _ in range(2):
        assert reconcile.reconcile_batch(store, sdk, "b5") == Outcome.RECONCILED
        assert not store.redis.exists(store.keys.lock("b5"))
    assert store.get("b5")["metadata"] is None and store.get("b5")["dropped_fields"] == ["metadata"]
    upstream.answer("b5", (200, batch("b5", "in_progress", billing=None, updated_at=1e20,
                                      created_at=float("inf"), in_progress_at=float("nan"))))
    assert reconcile.reconcile_batch(store, sdk, "b5") == Outcome.RECONCILED
    record = store.get("b5")
    assert record["status"] == "in_progress" and not store.redis.exists(store.keys.lock("b5"))
    json.dumps(record, allow_nan=False)  # nothing non-finite was stored


def test_an_id_the_sdk_refuses_leaves_the_sweep(app, store, sdk):
    # Item 7: the SDK's refusal used to be raised on every sweep, forever.
    for bad in ("..", "a/b"):
        store.request_reconcile(bad)
        assert reconcile.reconcile_batch(store, sdk, bad) == Outcome.INVALID
        record = store.get(bad)
        assert record["status"] == "not_found" and record["error"]["reason"] == "invalid_batch_id"
        assert bad not in store.due_for_sweep("+inf")
        assert not store.redis.exists(store.keys.lock(bad))


def test_unknown_batches_are_pruned_after_their_retention_with_their_indexes(app, store, upstream, sdk, monkeypatch):
    # Item 6: records of batches the gateway does not know used to stay forever.
    upstream.answer("ghost", (404, {"error": {"message": "No such batch"}}))
    deliver(app, make_event("ghost"))
    start = time.time()  # the misses must be minutes apart (not_found.py): date them so
    monkeypatch.setattr(reconcile, "clock", lambda: start + (0, 60, 300)[min(upstream.calls["ghost"], 3) - 1])
    for _ in range(reconcile.NOT_FOUND_ATTEMPTS - 1):
        with pytest.raises(reconcile.NotFoundYet):
            reconcile.reconcile_batch(store, sdk, "ghost")
    assert reconcile.reconcile_batch(store, sdk, "ghost") == Outcome.NOT_FOUND
    upstream.answer("real", (200, batch("real")))
    assert reconcile.reconcile_batch(store, sdk, "real") == Outcome.RECONCILED
    assert store.open_batches.prune_unknown(time.time() - 3600) == 0  # within its retention: kept
    assert store.get("ghost")["status"] == "not_found"
    assert store.open_batches.prune_unknown(time.time() + 1) == 1
    assert store.get("ghost") is None and store.events("ghost") == []
    for index in (store.keys.index_all, store.keys.index("status", "not_found")):
        assert store.redis.zscore(index, "ghost") is None
    assert store.redis.hget(store.keys.ledger_contributions, "ghost") is None
    assert store.get("real")["status"] == "completed" and store.redis.zscore(store.keys.index_all, "real")
