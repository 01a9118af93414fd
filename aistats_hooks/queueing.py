"""The RQ side of the pipeline: the queue, and reconcile jobs ready to enqueue.

The receiver queues jobs from inside a Lua script (one atomic step with the
event record), so jobs are built here with RQ's own ``Job`` and flattened to
the hash fields RQ itself would write; the stock ``rq worker`` runs them.
"""

from __future__ import annotations

import uuid

from redis import Redis
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.utils import now

from .config import Settings

RECONCILE_FUNC = "workers.jobs.reconcile_batch"
SWEEP_FUNC = "workers.jobs.sweep"
# Backoff for transient upstream errors; a 429's Retry-After replaces the step it hits.
RETRY_INTERVALS = [2, 10, 30, 120, 600]
JOB_TIMEOUT = 120
RESULT_TTL = 600
FAILURE_TTL = 7 * 86400


def make_queue(redis: Redis, settings: Settings) -> Queue:
    """Return the project's reconcile queue on ``redis``."""
    return Queue(settings.queue_name, connection=redis, default_timeout=JOB_TIMEOUT)


def new_job_id(settings: Settings) -> str:
    """Return a fresh job id carrying the key prefix (tests clean up by it)."""
    return f"{settings.key_prefix.replace(':', '_')}-{uuid.uuid4().hex}"


def reconcile_job(queue: Queue, batch_id: str, job_id: str) -> Job:
    """Build (without saving) the RQ job that reconciles ``batch_id``."""
    job = queue.create_job(
        RECONCILE_FUNC,
        args=(batch_id,),
        job_id=job_id,
        timeout=JOB_TIMEOUT,
        result_ttl=RESULT_TTL,
        failure_ttl=FAILURE_TTL,
        retry=Retry(max=len(RETRY_INTERVALS), interval=list(RETRY_INTERVALS)),
        description=f"reconcile {batch_id}",
    )
    # What Queue.enqueue_job sets before saving; we save from Lua instead.
    job.origin = queue.name
    job.enqueued_at = now()
    job._status = JobStatus.QUEUED
    return job


def job_fields(job: Job) -> list:
    """Flatten a job to the field/value list of its RQ hash (as RQ's own Lua does)."""
    fields: list = []
    for key, value in job.to_dict().items():
        # Empty fields (no callbacks, not started...) restore as None anyway;
        # skipping them halves the arguments of the ingest round trip.
        if value is None or value == "":
            continue
        fields.append(key)
        fields.append(value if isinstance(value, (bytes, str)) else str(value))
    return fields
