"""Reconcile jobs under a real RQ worker, against an upstream over real HTTP."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone

import pytest
from rq.registry import FailedJobRegistry, FinishedJobRegistry, ScheduledJobRegistry

from aistats_hooks import reconcile
from aistats_hooks.store import Store
from aistats_hooks.reconcile import Outcome, reconcile_batch, track_batch
from aistats_hooks.web import create_app
from tests.helpers import make_event, run_worker, signed, spawn_worker
from workers import context


@pytest.fixture
def app(settings, worker_env):
    """The receiver app; ``worker_env`` (conftest) gives in-process workers their environment."""
    return create_app(settings)


@pytest.fixture
def store(app) -> Store:
    return app.extensions["aistats"]


def deliver(app, event, **kw):
    body, headers = signed(event, **kw)
    return app.test_client().post("/webhooks/aistats", data=body, headers=headers)


def completed(batch_id):
    return make_event(batch_id)["data"]


def test_delivery_is_reconciled_from_retrieve(app, store, upstream):
    truth = completed("b1")
    truth["request_counts"] = {"total": 2, "completed": 2, "failed": 0}
    upstream.answer("b1", (200, truth))
    # A terminal delivery whose payload still says in_progress; retrieve says completed: retrieve wins.
    assert deliver(app, make_event("b1", "batch.completed", status="in_progress")).status_code == 202
    run_worker(store)
    record = store.get("b1")
    assert record["status"] == "completed" and record["source"] == "retrieve"
    assert record["billing"]["total_nanos"] == 20250 and record["reconcile_count"] == 1
    assert record["last_event"]["id"] == "evt_batch_b1_batch_completed"
    assert store.events("b1")[0]["outcome"] == "reconciled"
    assert upstream.calls["b1"] == 1
    assert store.redis.hget(store.keys.counters("reconcile_seconds"), "count") == b"1"  # for /metrics


def test_created_and_progress_start_a_provisional_record_and_the_end_costs_one_retrieve(app, store, upstream):
    truth = completed("p1")
    upstream.answer("p1", (200, truth))
    deliver(app, make_event("p1", "batch.created", status="validating", billing=None))
    run_worker(store)
    assert upstream.calls.get("p1", 0) == 0
    record = store.get("p1")
    assert record["status"] == "pending" and record["source"] == "webhook_payload"
    assert store.events("p1")[0]["outcome"] == "provisional"
    deliver(app, make_event("p1", "batch.progress", key="batch.progress:50", status="in_progress", billing=None))
    run_worker(store)
    assert upstream.calls.get("p1", 0) == 0 and store.get("p1")["status"] == "in_progress"
    deliver(app, make_event("p1"))  # batch.completed: the one retrieve of the lifecycle
    run_worker(store)
    assert upstream.calls["p1"] == 1
    record = store.get("p1")
    assert record["status"] == "completed" and record["source"] == "retrieve"


def test_a_created_delivery_that_reports_a_final_status_is_checked_with_the_gateway(app, store, upstream):
    upstream.answer("p2", (200, completed("p2")))
    deliver(app, make_event("p2", "batch.created", status="completed"))
    run_worker(store)
    assert upstream.calls["p2"] == 1 and store.get("p2")["source"] == "retrieve"


def test_final_batch_skips_the_upstream_call(app, store, upstream):
    upstream.answer("b2", (200, completed("b2")))
    deliver(app, make_event("b2"))
    run_worker(store)
    # A stale progress after the terminal event: recorded, not queued, no retrieve.
    resp = deliver(app, make_event("b2", "batch.progress", key="batch.progress:90", status="in_progress"))
    assert resp.json["job"] == "final"
    assert store.queue.count == 0
    assert reconcile_batch(store, context.current().client, "b2") == Outcome.SKIPPED_FINAL
    assert upstream.calls["b2"] == 1
    assert store.get("b2")["status"] == "completed"


def _run_scheduled_now(store) -> float:
    """Move the one scheduled job to the queue now; return when RQ had scheduled it (unix seconds)."""
    registry = ScheduledJobRegistry(queue=store.queue)
    (job_id,) = registry.get_job_ids()
    when = registry.get_scheduled_time(job_id).replace(tzinfo=timezone.utc).timestamp()
    job = store.queue.fetch_job(job_id)
    registry.remove(job)
    store.queue.enqueue_job(job)
    return when


def test_a_404_is_believed_only_after_three_answers_over_minutes(app, store, upstream, monkeypatch):
    # One 404 used to mark the batch not_found and drop it from the sweep for good.
    upstream.answer("ghost", (404, {"error": {"message": "No such batch"}}))
    deliver(app, make_event("ghost"))
    before = time.time()
    # The misses must be minutes apart (aistats_hooks/rules/not_found.py): date them as the scheduled retries would.
    monkeypatch.setattr(reconcile, "clock", lambda: before + (0, 60, 300)[upstream.calls["ghost"] - 1])
    run_worker(store)
    record = store.get("ghost")
    assert record["status"] != "not_found" and record["not_found_misses"] == 1
    assert "ghost" in store.due_for_sweep("+inf")
    assert _run_scheduled_now(store) >= int(before) + 60
    run_worker(store)
    assert store.get("ghost")["not_found_misses"] == 2
    assert _run_scheduled_now(store) >= int(before) + 240
    run_worker(store)
    record = store.get("ghost")
    assert record["status"] == "not_found" and record["not_found"] is True
    assert ScheduledJobRegistry(queue=store.queue).count == 0
    assert FailedJobRegistry(queue=store.queue).count == 0
    assert "ghost" not in store.due_for_sweep("+inf")
    assert upstream.calls["ghost"] == 3


def test_a_batch_briefly_unknown_is_reconciled_once_it_appears(app, store, upstream):
    upstream.answer("late", (404, {"error": {"message": "No such batch"}}), (200, completed("late")))
    deliver(app, make_event("late"))
    run_worker(store)
    _run_scheduled_now(store)
    run_worker(store)
    record = store.get("late")
    assert record["status"] == "completed" and record["source"] == "retrieve"
    assert "not_found_misses" not in record and "not_found" not in record


def test_rate_limit_retries_after_retry_after(app, store, upstream):
    upstream.answer("b3", (429, {"error": {"message": "slow down"}}, {"Retry-After": "37"}), (200, completed("b3")))
    deliver(app, make_event("b3"))
    before = time.time()
    run_worker(store)
    registry = ScheduledJobRegistry(queue=store.queue)
    (job_id,) = registry.get_job_ids()
    when = registry.get_scheduled_time(job_id).replace(tzinfo=timezone.utc).timestamp()
    assert when >= int(before) + 37  # RQ keeps whole seconds
    assert store.get("b3") is None  # nothing applied yet: not the last attempt
    # The 429 paused every process's calls (upstream_budget): end the pause with the wait we skip.
    assert store.redis.pttl(store.keys.upstream_paused) > 30_000
    store.redis.delete(store.keys.upstream_paused)
    # Let RQ's scheduler move it now rather than waiting 37 s.
    job = store.queue.fetch_job(job_id)
    registry.remove(job)
    store.queue.enqueue_job(job)
    run_worker(store)
    assert store.get("b3")["status"] == "completed"
    assert upstream.calls["b3"] == 2


def test_transient_error_retries_then_falls_back_to_payload(app, store, upstream):
    upstream.answer("b4", (503, {"error": {"message": "down"}}))
    deliver(app, make_event("b4"))
    run_worker(store)
    assert ScheduledJobRegistry(queue=store.queue).count == 1
    assert store.get("b4") is None
    # The last attempt: RQ has no retries left for it.
    registry = ScheduledJobRegistry(queue=store.queue)
    job = store.queue.fetch_job(registry.get_job_ids()[0])
    registry.remove(job)
    job.retries_left = 0
    store.queue.enqueue_job(job)
    run_worker(store)
    record = store.get("b4")
    assert record["source"] == "webhook_payload" and record["status"] == "completed"
    assert FailedJobRegistry(queue=store.queue).count == 1  # the failure stays visible
    # The sweep sees it as open, and a later retrieve makes it the truth.
    assert "b4" in store.due_for_sweep(time.time() + 1)
    upstream.answer("b4", (200, completed("b4")))
    store.request_reconcile("b4")
    run_worker(store)
    assert store.get("b4")["source"] == "retrieve"


def test_auth_error_fails_fast(app, store, upstream):
    upstream.answer("b5", (401, {"error": {"message": "bad key"}}))
    deliver(app, make_event("b5"))
    run_worker(store)
    assert FailedJobRegistry(queue=store.queue).count == 1
    assert ScheduledJobRegistry(queue=store.queue).count == 0
    assert store.counters("upstream")["auth_failed"] == 1


def test_event_during_a_run_gives_exactly_one_follow_up(app, store, upstream):
    upstream.answer("b6", (200, make_event("b6", status="in_progress")["data"]))
    sent = []

    def during(batch_id):
        if not sent:  # only during the first run
            for pct in (50, 60, 70):
                sent.append(deliver(app, make_event("b6", "batch.progress", key=f"batch.progress:{pct}")).json["job"])

    upstream.on_retrieve = during
    deliver(app, make_event("b6", "batch.progress", key="batch.progress:40"))
    run_worker(store)
    assert sent == ["queued", "coalesced", "coalesced"]
    assert upstream.calls["b6"] == 2
    assert store.get("b6")["reconcile_count"] == 2


def test_follow_ups_within_the_debounce_window_wait_for_its_end(app, store, upstream, monkeypatch):
    monkeypatch.setenv("AISTATS_DEBOUNCE_MS", "3000")
    context.current.cache_clear()
    upstream.answer("b10", (200, make_event("b10", status="in_progress")["data"]))
    deliver(app, make_event("b10", "batch.progress", key="batch.progress:10"))
    run_worker(store)  # the first event of a quiet batch runs at once
    before = time.time()
    storm = [deliver(app, make_event("b10", "batch.progress", key=f"batch.progress:{p}")).json["job"]
             for p in range(20, 100, 10)]
    assert storm == ["queued"] + ["coalesced"] * 7
    assert store.queue.count == 0  # not in the queue: scheduled for the window's end
    registry = ScheduledJobRegistry(queue=store.queue)
    (job_id,) = registry.get_job_ids()
    when = registry.get_scheduled_time(job_id).replace(tzinfo=timezone.utc).timestamp()
    assert int(before) + 1 <= when <= before + 4
    # RQ's scheduler moves it when due; do it now.
    job = store.queue.fetch_job(job_id)
    registry.remove(job)
    store.queue.enqueue_job(job)
    run_worker(store)
    assert upstream.calls["b10"] == 2  # 9 events, 2 retrieves
    assert {e["outcome"] for e in store.events("b10")} == {"reconciled"}


def test_two_workers_never_reconcile_one_batch_at_once(app, store, upstream, settings):
    upstream.answer("b7", (200, completed("b7")))
    upstream.on_retrieve = lambda batch_id: time.sleep(0.3)
    for _ in range(4):
        # force: every run calls upstream, so the runs really overlap in time
        store.queue.enqueue("workers.jobs.reconcile_batch", "b7", force=True, job_id=f"{settings.key_prefix}-{_}")
    env = {k: v for k, v in os.environ.items() if k.startswith(("AISTATS_", "REDIS_URL"))}
    workers = [spawn_worker(settings.queue_name, env) for _ in range(2)]
    for worker in workers:
        output = worker.communicate(timeout=60)[0].decode()
        assert worker.returncode == 0, output
    assert upstream.calls["b7"] == 4
    assert upstream.max_active == 1
    assert store.ledger.total() == 20250
    assert FinishedJobRegistry(queue=store.queue).count == 4


def test_concurrent_saves_never_double_count(app, store):
    from aistats_hooks.rules.merge import merge
    from aistats_hooks.rules.status import Source

    record = merge(None, completed("b8"), source=Source.RETRIEVE)

    def save_many():
        for _ in range(25):
            store.save(record)

    threads = [threading.Thread(target=save_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.ledger.total() == 20250
    day = datetime(2026, 6, 17).date().isoformat()
    assert store.ledger.by("day")[day] == 20250


def test_rereconcile_adds_only_the_difference(app, store):
    from aistats_hooks.rules.merge import merge

    first = merge(None, completed("b9"))
    store.save(first)
    corrected = completed("b9")
    corrected["billing"] = dict(corrected["billing"], total_nanos=30000)
    corrected["updated_at"] = "2026-06-17T16:10:00.000Z"
    second = merge(first, corrected)
    store.save(second)
    assert store.ledger.total() == 30000
    assert store.ledger.by("model")["openai/gpt-5-mini"] == 30000


def test_final_batch_keeps_its_terminal_body_and_drops_superseded_ones(app, store, upstream):
    upstream.answer("b11", (200, make_event("b11", status="in_progress")["data"]))
    for key in ("batch.created", "batch.progress:50"):
        deliver(app, make_event("b11", key.split(":")[0], key=key, status="in_progress"))
    run_worker(store)
    assert all(e["body"] for e in store.events("b11"))  # not final yet: every body kept
    upstream.answer("b11", (200, completed("b11")))
    deliver(app, make_event("b11"))
    run_worker(store)
    events = {e["type"]: e for e in store.events("b11")}
    assert events["batch.completed"]["body"] and not events["batch.completed"]["body_dropped"]
    for kind in ("batch.created", "batch.progress"):
        assert events[kind]["body"] is None and events[kind]["body_dropped"]
        assert events[kind]["headers"]["x-phaseo-signature"]  # the audit trail stays
    # Dropped bodies still deduplicate.
    again = deliver(app, make_event("b11", "batch.progress", key="batch.progress:50"), attempt=2)
    assert again.json["status"] == "duplicate"


def test_tracking_never_overwrites_retrieved_state(app, store, upstream):
    upstream.answer("b12", (200, completed("b12")))
    deliver(app, make_event("b12"))
    run_worker(store)
    # The CLI's create-batch tracks the creation snapshot, after the webhook won the race.
    track_batch(store, make_event("b12", status="validating", updated_at="2026-06-17T15:59:00.000Z")["data"])
    record = store.get("b12")
    assert record["status"] == "completed" and record["source"] == "retrieve"
    assert store.redis.get(store.keys.lock("b12")) is None  # tracking releases the lock it takes
