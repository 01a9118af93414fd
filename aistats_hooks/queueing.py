"""The RQ side of the pipeline: the queue, and reconcile jobs our Lua scripts enqueue.

The receiver queues jobs from inside a Lua script (one atomic step with the
event record), so the script must write exactly what RQ's own
``Queue.enqueue_job`` / ``Queue.schedule_job`` would. Nothing here restates
RQ: ``RQContract`` reads every key name and status from RQ's classes at start,
and ``RQContract.new_job`` builds each job through ``Queue.create_job`` and
serializes it with ``Job.to_dict()`` (RQ's own encoding of ``data``).
``tests/test_queueing.py`` diffs what the scripts write against RQ's own
enqueue in a real Redis, so an RQ upgrade that changes it fails a test.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

from redis import Redis
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq import job as rq_job
from rq.utils import utcformat

from .config import Settings

RECONCILE_FUNC = "workers.jobs.reconcile_batch"
# Backoff for transient upstream errors; a 429's Retry-After replaces the step it hits.
RETRY_INTERVALS = [2, 10, 30, 120, 600]
JOB_TIMEOUT = 120
# Results are not read (the outcome is on the batch's events); keeping none
# saves tens of KB of Redis per batch under load.
RESULT_TTL = 0
FAILURE_TTL = 7 * 86400
# Fields the script sets itself: the status it decides (queued or scheduled),
# and enqueued_at, which RQ writes only when it queues (not when it schedules).
SCRIPT_SET = ("status", "enqueued_at")


def make_queue(redis: Redis, settings: Settings) -> Queue:
    """Return the project's reconcile queue on ``redis``."""
    return Queue(settings.queue_name, connection=redis, default_timeout=JOB_TIMEOUT)


def new_job_id(settings: Settings) -> str:
    """Return a fresh job id carrying the key prefix (tests clean up by it)."""
    return f"{settings.key_prefix.replace(':', '_')}-{uuid.uuid4().hex}"


def reconcile_job(queue: Queue, batch_id: str, job_id: str | None = None) -> Job:
    """Build (without saving) the RQ job that reconciles ``batch_id``, as RQ would."""
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


@dataclass(frozen=True)
class NewJob:
    """One reconcile job, serialized by RQ, ready for a script to write."""

    id: str
    key: str
    fields: list  # flat [name, value, ...]: the fields of RQ's to_dict() that differ from job to job
    enqueued_at: str  # RQ's timestamp format; written only if the job is queued


class RQContract:
    """The RQ names and encodings our scripts use, all taken from RQ's own classes."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.job_class: type[Job] = queue.job_class
        self.job_key_prefix: str = queue.job_class.redis_job_namespace_prefix
        self.queue_key: str = queue.key
        self.queues_key: str = queue.redis_queues_keys  # the set `rq info` lists queues from
        self.scheduled_key: str = queue.scheduled_job_registry.key
        self.queued: str = JobStatus.QUEUED.value
        self.scheduled: str = JobStatus.SCHEDULED.value
        # The job hash's fields that are the same for every reconcile job, read
        # once from RQ's own to_dict() of two different jobs: the scripts get them
        # at start, and an acknowledgement sends only the three that vary.
        one, other = self._serialized("batch_a", "job_a"), self._serialized("batch_b", "job_b")
        self.varying = tuple(k for k in one if k not in SCRIPT_SET and (k == "created_at" or one[k] != other.get(k)))
        pairs = [(k, v) for k, v in one.items() if k not in SCRIPT_SET and k not in self.varying]
        if any(isinstance(v, bytes) for _, v in pairs):  # pragma: no cover - an RQ change the tests would show
            raise TypeError("RQ's constant job fields are expected to be text or numbers")
        self.constant: list[str] = [str(x) for pair in pairs for x in pair]
        self._templates = threading.local()

    def job_key(self, job_id: str) -> str:
        """Return the key of job ``job_id``'s hash."""
        return self.job_class.key_for(job_id)

    def _serialized(self, batch_id: str, job_id: str) -> dict:
        job = reconcile_job(self.queue, batch_id, job_id)
        job.origin = self.queue.name  # what enqueue_job and schedule_job set before saving
        return job.to_dict()

    def new_job(self, batch_id: str, job_id: str) -> NewJob:
        """Build the reconcile job of ``batch_id``, serialized by RQ's own ``Job.to_dict()``.

        One template job per thread (built by ``Queue.create_job``) gets this
        job's id, arguments, description and creation time; building a new Job
        per acknowledgement cost three times as much.
        """
        job = getattr(self._templates, "job", None)
        if job is None:
            job = self._templates.job = reconcile_job(self.queue, "template")
            job.origin = self.queue.name
        job.id = job_id
        job.args = (batch_id,)
        job.description = describe(batch_id)
        job.created_at = rq_job.now()  # what Job() sets, through the name RQ itself calls
        serialized = job.to_dict()
        fields: list = []
        for name in self.varying:
            fields += (name, serialized[name])
        return NewJob(job.id, self.job_key(job.id), fields, utcformat(job.created_at))
