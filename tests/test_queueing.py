"""Jobs enqueued from Lua must be the jobs RQ itself would have written."""

from __future__ import annotations

from rq.job import Job

from aistats_hooks import queueing
from aistats_hooks.store import Store


def test_lua_written_job_equals_rqs_own(redis_client, settings):
    store = Store(redis_client, settings)
    assert store.request_reconcile("batch_q") == "queued"
    (job_id,) = store.queue.job_ids
    ours = {k.decode(): v for k, v in redis_client.hgetall(f"rq:job:{job_id}").items()}
    theirs = queueing.reconcile_job(store.queue, "batch_q", job_id)
    theirs.origin = store.queue.name
    expected = {k: (v if isinstance(v, bytes) else str(v).encode()) for k, v in theirs.to_dict().items()
                if v is not None and v != ""}
    for stamp in ("created_at", "enqueued_at"):
        assert ours.pop(stamp) and expected.pop(stamp, b"x")
    expected["status"] = b"queued"
    assert ours == expected


def test_rq_restores_the_call(redis_client, settings):
    store = Store(redis_client, settings)
    store.request_reconcile("batch_r")
    job = Job.fetch(store.queue.job_ids[0], connection=redis_client)
    assert job.func_name == queueing.RECONCILE_FUNC
    assert job.args == ("batch_r",) and job.kwargs == {}
    assert job.retries_left == len(queueing.RETRY_INTERVALS)
    assert job.retry_intervals == queueing.RETRY_INTERVALS
    assert job.get_status() == "queued" and job.origin == settings.queue_name
