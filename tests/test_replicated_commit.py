"""With AISTATS_MIN_REPLICAS, a reconcile is done only once replicas have its commit; otherwise it is retried."""

from __future__ import annotations

from rq.registry import ScheduledJobRegistry

from aistats_hooks.store import Store
from tests.helpers import make_event, run_worker
from workers import context


def test_a_commit_no_replica_confirms_is_retried_not_done(settings, worker_env, upstream, redis_client, monkeypatch,
                                                          caplog):
    # This test's Redis has no replica: WAIT 1 always confirms 0 (after 20 ms).
    monkeypatch.setenv("AISTATS_MIN_REPLICAS", "1")
    monkeypatch.setenv("AISTATS_REPLICA_TIMEOUT_MS", "20")
    context.current.cache_clear()
    store = Store(redis_client, settings.replace(min_replicas=1, replica_timeout_ms=20))
    upstream.answer("r1", (200, make_event("r1")["data"]))
    store.request_reconcile("r1", debounce=False)
    run_worker(store)
    assert upstream.calls["r1"] == 1
    assert len(ScheduledJobRegistry(queue=store.queue).get_job_ids()) == 1  # not done: RQ retries it
    assert "0 of 1 replicas acknowledged" in caplog.text
    context.current.cache_clear()


def test_without_replicas_wanted_the_commit_does_not_wait(settings, worker_env, upstream, redis_client):
    store = Store(redis_client, settings)
    upstream.answer("r2", (200, make_event("r2")["data"]))
    store.request_reconcile("r2", debounce=False)
    run_worker(store)
    assert store.get("r2")["status"] == "completed"
    assert ScheduledJobRegistry(queue=store.queue).get_job_ids() == []
