"""Concurrent reconciles inside one worker (workers/batch_jobs.py): real Redis, real RQ worker, the sandbox gateway."""

from __future__ import annotations

import httpx
import pytest
from rq.job import JobStatus

from aistats_hooks.sandbox import SandboxServer
from aistats_hooks.store import Store
from tests.helpers import run_worker, wait_for
from workers import batch_jobs, context

API_KEY = "sk_sandbox_batch_jobs"
TERMINAL = {"completed", "failed", "cancelled", "expired"}


@pytest.fixture
def sandbox():
    with SandboxServer(API_KEY, speed=3600, seed=7, poll_seconds=0, fast_poll_seconds=0) as srv:
        yield srv


@pytest.fixture
def store(settings, sandbox, monkeypatch) -> Store:
    """The worker's environment pointed at the sandbox, with 4 reconciles at once."""
    for name, value in {
        "REDIS_URL": settings.redis_url, "AISTATS_API_KEY": API_KEY, "AISTATS_BASE_URL": sandbox.base_url,
        "AISTATS_KEY_PREFIX": settings.key_prefix, "AISTATS_QUEUE": settings.queue_name,
        "AISTATS_WEBHOOK_SECRET": "whsec_test_secret", "AISTATS_DEBOUNCE_MS": "0",
        "AISTATS_RECONCILE_CONCURRENCY": "4",
    }.items():
        monkeypatch.setenv(name, value)
    context.current.cache_clear()
    yield context.current().store
    context.current.cache_clear()


def finished_batches(sandbox: SandboxServer, count: int) -> list[str]:
    with httpx.Client(base_url=sandbox.base_url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        ids = [http.post("/batches", json={"prompts": ["a", "b"]}).json()["id"] for _ in range(count)]
    wait_for(lambda: all(sandbox.gateway.truth(i)["status"] in TERMINAL for i in ids))
    return ids


def test_one_worker_claims_waiting_jobs_and_each_batch_is_retrieved_once(store, sandbox):
    ids = finished_batches(sandbox, 12)
    sandbox.gateway.stats.reset()
    for batch_id in ids:
        assert store.request_reconcile(batch_id, debounce=False) == "queued"
    worker = run_worker(store)
    # RQ's own loop ran fewer jobs than were queued: the rest were claimed and run beside them.
    assert worker.successful_job_count < len(ids)
    for batch_id in ids:
        record = store.get(batch_id)
        assert record["status"] == sandbox.gateway.truth(batch_id)["status"]
        assert sandbox.gateway.stats.get("retrieve_calls", "by_batch", batch_id) == 1
    # Finished as RQ finishes ours (result_ttl 0): the job hashes are gone, nothing waits or failed.
    assert store.queue.count == 0 and store.queue.failed_job_registry.count == 0
    assert store.queue.started_job_registry.count == 0  # every claim's registry entry went with its end
    job_ids = store.settings.key_prefix.replace(":", "_") + "-*"  # queueing.new_job_id
    left = store.redis.keys(store.queue.job_class.redis_job_namespace_prefix + job_ids)
    assert not [k for k in left if b"-h-" not in k]  # handler jobs (-h-), if any are registered, keep theirs


def test_claiming_skips_other_jobs_and_keeps_their_order(store):
    queue = store.queue
    other = queue.enqueue("bench.noop.noop")
    for batch_id in ("x1", "x2"):
        store.request_reconcile(batch_id, debounce=False)
    last = queue.enqueue("bench.noop.noop")
    claimed = batch_jobs.ClaimJobs(store.redis).call(queue, 5)
    assert len(claimed) == 2
    assert queue.get_job_ids() == [other.id, last.id]
    assert {queue.fetch_job(j).get_status() for j in claimed} == {JobStatus.STARTED}
    # A claimed job is no longer waiting: a new event of its batch queues a fresh job.
    assert store.request_reconcile("x1", debounce=False) == "queued"


def test_a_failing_claimed_job_is_retried_by_rq(store, sandbox):
    ids = finished_batches(sandbox, 3)
    for batch_id in ids:
        store.request_reconcile(batch_id, debounce=False)
    store.request_reconcile("batch_unknown_to_the_gateway", debounce=False)
    run_worker(store)
    for batch_id in ids:
        assert store.get(batch_id)["status"] in TERMINAL
    # The 404 was counted and the job scheduled for a later attempt, as RQ's worker would have done.
    assert store.get("batch_unknown_to_the_gateway")["not_found_misses"] == 1
    assert store.queue.scheduled_job_registry.count == 1


def test_jobs_claimed_by_a_worker_that_died_are_retried_by_rqs_cleanup(store, sandbox):
    ids = finished_batches(sandbox, 2)
    for batch_id in ids:
        store.request_reconcile(batch_id, debounce=False)
    queue = store.queue
    claimed = batch_jobs.ClaimJobs(store.redis).call(queue, 5)  # ...and the worker dies before running them
    assert len(claimed) == 2 and queue.count == 0
    registry = queue.started_job_registry
    assert set(registry.get_job_ids()) == set(claimed)
    registry.cleanup()  # not abandoned yet: the claim's expiry is ahead
    assert queue.count == 0
    import time as _time

    registry.cleanup(_time.time() + batch_jobs.JOB_TIMEOUT + 120)  # RQ's maintenance, once the claim expired
    # Retried by RQ's Job.retry: back in the queue, or scheduled at the job's retry interval.
    retried = set(queue.get_job_ids()) | set(queue.scheduled_job_registry.get_job_ids())
    assert retried == set(claimed) and registry.count == 0
    for job_id in queue.scheduled_job_registry.get_job_ids():
        queue.enqueue_job(queue.fetch_job(job_id))  # the scheduler's move, without waiting for its interval
        queue.scheduled_job_registry.remove(job_id)
    run_worker(store)
    assert all(store.get(b)["status"] in TERMINAL for b in ids)
    assert registry.count == 0  # a claimed job that ends leaves no entry behind
