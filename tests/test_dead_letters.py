"""Failed reconciles in RQ's failed registry: listed with their error and attempts, requeued."""

from __future__ import annotations

from rq import SimpleWorker

from aistats_hooks import dead_letters
from aistats_hooks.queueing import make_queue


def _fail(batch_id: str) -> None:
    raise RuntimeError(f"gateway refused {batch_id}")


def test_failed_jobs_are_listed_and_requeued(settings, redis_client):
    queue = make_queue(redis_client, settings)
    jobs = [queue.enqueue(_fail, f"batch_{n}", job_id=f"{settings.key_prefix}-dl{n}") for n in range(3)]
    SimpleWorker([queue], connection=redis_client).work(burst=True)
    assert dead_letters.count(queue) == 3
    listed = dead_letters.failed_jobs(queue, limit=2)
    assert len(listed) == 2 and {j["job_id"] for j in listed} <= {j.id for j in jobs}
    first = next(j for j in dead_letters.failed_jobs(queue) if j["job_id"] == jobs[0].id)
    assert first["batch_id"] == "batch_0" and first["attempts"] == 1
    assert first["error"] == "RuntimeError: gateway refused batch_0" and first["failed_at"].endswith("Z")
    assert dead_letters.requeue(queue, jobs[0].id) is True
    assert dead_letters.requeue(queue, jobs[0].id) is False  # no longer failed
    assert dead_letters.requeue(queue, "no-such-job") is False
    assert queue.count == 1 and dead_letters.count(queue) == 2
    assert dead_letters.requeue_all(queue) == 2
    assert queue.count == 3 and dead_letters.count(queue) == 0
