"""The RQ side of the pipeline: the queue, and reconcile jobs ready to enqueue from Lua.

The receiver queues jobs from inside a Lua script (one atomic step with the
event record). A ``JobTemplate`` is built once from RQ's own ``Job``: the
fields every reconcile job shares are baked into the script text, and each
enqueue passes only what differs (id, time, the serialized call). A test
checks the result against ``Job.to_dict()`` so an RQ upgrade cannot drift.
"""

from __future__ import annotations

import uuid
import zlib
from datetime import datetime, timezone

from redis import Redis
from rq import Queue, Retry
from rq.job import Job
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
VARYING = ("created_at", "enqueued_at", "data", "description", "status")


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
        description=f"reconcile {batch_id}",
    )


class JobTemplate:
    """The hash fields of reconcile jobs: constant ones once, varying ones per enqueue."""

    def __init__(self, queue: Queue) -> None:
        job = reconcile_job(queue, "template")
        job.origin = queue.name
        self.serializer = job.serializer
        self.constant = [
            (key, value if isinstance(value, str) else str(value))
            for key, value in job.to_dict().items()
            if key not in VARYING and value is not None and value != ""
        ]

    def lua_fields(self) -> str:
        """Return the constant fields as the items of a Lua table constructor."""
        return ", ".join(f"{_lua(k)}, {_lua(v)}" for k, v in self.constant)

    def varying(self, batch_id: str) -> list:
        """Return created_at, data and description of a new job for ``batch_id``."""
        stamp = utcformat(datetime.now(timezone.utc))
        data = zlib.compress(self.serializer.dumps((RECONCILE_FUNC, None, (batch_id,), {})))
        return [stamp, data, f"reconcile {batch_id}"]


def _lua(text: str) -> str:
    """Quote ``text`` as a Lua string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'

