"""Due batches taken ahead of their jobs (workers/drain.py): real Redis, a real RQ worker, the sandbox gateway."""

from __future__ import annotations

import httpx
import pytest

from aistats_hooks.reconcile import Outcome
from aistats_hooks.sandbox import SandboxServer
from aistats_hooks.store import Store
from tests.helpers import run_worker, wait_for
from workers import context, drain

API_KEY = "sk_sandbox_drain"
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


def test_a_running_job_takes_due_batches_ahead_and_each_batch_is_retrieved_once(store, sandbox):
    ids = finished_batches(sandbox, 12)
    sandbox.gateway.stats.reset()
    for batch_id in ids:
        assert store.request_reconcile(batch_id, debounce=False) == "queued"
    assert store.redis.zcard(store.keys.due) == 12
    run_worker(store)
    for batch_id in ids:
        assert store.get(batch_id)["status"] == sandbox.gateway.truth(batch_id)["status"]
        assert sandbox.gateway.stats.get("retrieve_calls", "by_batch", batch_id) == 1
    # Every job still ran through RQ (those whose batch ran ahead ended at once); nothing waits or failed.
    assert store.queue.count == 0 and store.queue.failed_job_registry.count == 0
    assert store.redis.zcard(store.keys.due) == 0
    assert not list(store.redis.scan_iter(match=store.keys.ahead("*")))  # every mark was read by its job
    # Each run counts once (/metrics): 12 jobs, plus every batch run ahead of its job.
    runs = int(store.redis.hget(store.keys.counters("reconcile_seconds"), "count"))
    assert runs > 12


def test_a_job_whose_batch_ran_ahead_ends_at_once_but_not_when_something_came_since(store, sandbox):
    (batch_id,) = finished_batches(sandbox, 1)
    store.request_reconcile(batch_id, debounce=False)
    ((taken, job_id),) = drain.TakeDue(store.redis).call(store.keys, 5)
    assert taken == batch_id
    from workers.jobs import reconcile_batch, run_ahead

    assert run_ahead(batch_id, job_id) == Outcome.RECONCILED.value
    store.redis.set(store.keys.ahead(job_id), "1")  # as the feeder marks it
    from aistats_hooks import reconcile

    ctx = context.current()
    assert reconcile.reconcile_batch(store, ctx.client, batch_id, job_id=job_id) == Outcome.SUPERSEDED
    # Marked again, but a delivery arrived since: the job reconciles.
    store.redis.set(store.keys.ahead(job_id), "1")
    store.redis.hset(store.keys.outcomes(batch_id), "evt_x", "queued:1")
    assert reconcile.reconcile_batch(store, ctx.client, batch_id, job_id=job_id) != Outcome.SUPERSEDED
    assert reconcile_batch  # the RQ job function is the one the feeder runs beside


def test_a_failed_run_ahead_leaves_the_batch_to_its_job_and_rqs_retries(store, sandbox):
    ids = finished_batches(sandbox, 3)
    store.request_reconcile(ids[0], debounce=False)
    for batch_id in ids[1:]:
        store.request_reconcile(batch_id, debounce=False)
    failing = ids[1]
    job_of = {b: store.redis.get(store.keys.pending(b)).decode() for b in ids}

    def run(batch_id: str, job_id: str):
        if batch_id == failing:
            raise RuntimeError("the gateway went away")
        from workers.jobs import run_ahead

        return run_ahead(batch_id, job_id)

    ran = drain.feed(store.redis, store.keys, drain.TakeDue(store.redis), 4, run, own=ids[0])
    assert ran == 2
    # The failed one's slot is its job's again, unmarked: that job runs it in full.
    assert store.redis.get(store.keys.pending(failing)).decode() == job_of[failing]
    assert not store.redis.exists(store.keys.ahead(job_of[failing]))
    assert store.redis.exists(store.keys.ahead(job_of[ids[2]]))
    sandbox.gateway.stats.reset()
    run_worker(store)
    assert store.get(failing)["status"] == sandbox.gateway.truth(failing)["status"]
    assert sandbox.gateway.stats.get("retrieve_calls", "by_batch", failing) == 1
    assert sandbox.gateway.stats.get("retrieve_calls", "by_batch", ids[2]) == 0  # done ahead: its job ended at once
