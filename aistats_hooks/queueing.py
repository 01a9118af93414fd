"""The RQ side of the pipeline: the reconcile queue, and its jobs, through RQ's public API only.

Our Lua scripts never write an RQ key. The acknowledgement records the event
and takes the batch's pending slot in one Lua step on our own keys (store/ingest.py,
store/coalesce.py); the slot names the id of the job to come, and this module then
enqueues that job with ``Queue.enqueue_job`` (or ``Queue.schedule_job`` for a
debounced one) on a pipeline: one round trip.

A crash between the two steps (the web process killed after the Lua step) leaves a
slot naming a job that does not exist, and no 2xx: the gateway retries, the retry is
a duplicate, and a duplicate ensures the job its batch's slot names exists
(``ensure``). The sweep replaces a slot older than its period, whatever the cause.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from redis import Redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.job import Job

from .config import Settings

RECONCILE_FUNC = "workers.jobs.reconcile_batch"
# Backoff for transient upstream errors; a 429's Retry-After replaces the step it hits.
RETRY_INTERVALS = [2, 10, 30, 120, 600]
JOB_TIMEOUT = 120
# Results are not read (the outcome is on the batch's events); keeping none
# saves tens of KB of Redis per batch under load.
RESULT_TTL = 0
FAILURE_TTL = 7 * 86400


def make_queue(redis: Redis, settings: Settings) -> Queue:
    """Return the project's reconcile queue on ``redis``."""
    return Queue(settings.queue_name, connection=redis, default_timeout=JOB_TIMEOUT)


def new_job_id(settings: Settings) -> str:
    """Return a fresh job id carrying the key prefix (tests clean up by it)."""
    return f"{settings.key_prefix.replace(':', '_')}-{uuid.uuid4().hex}"


def reconcile_job(queue: Queue, batch_id: str, job_id: str | None = None) -> Job:
    """Build (without saving) the RQ job that reconciles ``batch_id``."""
    return queue.create_job(
        RECONCILE_FUNC,
        args=(batch_id,),
        job_id=job_id,
        timeout=JOB_TIMEOUT,
        result_ttl=RESULT_TTL,
        failure_ttl=FAILURE_TTL,
        retry=Retry(max=len(RETRY_INTERVALS), interval=list(RETRY_INTERVALS)),
        description=describe(batch_id),
    )


def describe(batch_id: str) -> str:
    """Return the description of the reconcile job of ``batch_id`` (what `rq info` shows)."""
    return f"reconcile {batch_id}"


def enqueue(queue: Queue, batch_id: str, job_id: str, wait_ms: int = 0, *, unique: bool = False) -> bool:
    """Enqueue the reconcile job ``job_id`` of ``batch_id`` (after ``wait_ms``); False if ``unique`` and it exists.

    A fresh job id (what a slot just taken names) cannot exist yet: its enqueue is one
    pipeline, one round trip. ``unique`` (the crash repair) uses RQ's atomic unique enqueue.
    """
    job = reconcile_job(queue, batch_id, job_id)
    due = datetime.now(timezone.utc) + timedelta(milliseconds=wait_ms) if wait_ms > 0 else None
    try:
        if unique:
            if due is not None:
                queue.schedule_job(job, due, unique=True)
            else:
                queue.enqueue_job(job, unique=True)
            return True
    except DuplicateJobError:
        return False
    with queue.connection.pipeline() as pipe:
        if due is not None:
            queue.schedule_job(job, due, pipeline=pipe)
        else:
            queue.enqueue_job(job, pipeline=pipe)
        pipe.execute()
    return True


def ensure(queue: Queue, batch_id: str, job_id: str) -> bool:
    """Make sure the job a batch's pending slot names exists; True if it had to be enqueued.

    The repair of a crash between the acknowledgement's two steps: called for a duplicate
    delivery (the gateway's retry of one never answered) whose batch still has a slot.
    """
    if Job.exists(job_id, connection=queue.connection):
        return False
    return enqueue(queue, batch_id, job_id, unique=True)
