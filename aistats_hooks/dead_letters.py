"""Failed work, as RQ keeps it: list the jobs in the queues' FailedJobRegistry and requeue them.

A reconcile that failed for good (a refused API key, a gateway down past
every retry) lands in RQ's own failed registry; so does a handler run or a
forwarded message, on its own queue (``job_queues.py``). Given the reconcile
queue, this module reads the registries of the whole family for the CLI, the
query API, the dashboard and ``/metrics``, and requeues through RQ's
``FailedJobRegistry.requeue``. No copy of RQ's state is kept.
"""

from __future__ import annotations

from typing import Any

from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.results import Result

from . import job_queues
from .rules.timestamps import iso

# What a person does about a failed reconcile, by the kind of its error (``kind_of``).
NEXT_STEPS = {
    "key_refused": "the gateway refused AISTATS_API_KEY: fix the key, restart the workers, "
                   "then requeue (`aistats-hooks requeue --all`, or Requeue on the dashboard)",
    "payment": "the gateway wants payment (402): add funds to the workspace, then requeue",
    "upstream": "the gateway was unreachable or rate-limited through every retry: requeue once it answers",
    "other": "read the error; requeue once its cause is fixed",
}
_KINDS = {"AuthenticationError": "key_refused", "PermissionDeniedError": "key_refused",
          "PaymentRequiredError": "payment", "UpstreamUnavailable": "upstream", "RateLimitError": "upstream"}


def kind_of(error: str | None) -> str:
    """Return the kind of a failure from its last line (``module.ClassName: message``)."""
    name = (error or "").split(":", 1)[0].strip().rsplit(".", 1)[-1]
    return _KINDS.get(name, "other")


FORWARD_FUNC = "workers.forward_jobs.deliver"
# What each job function does, said as a person would.
WORK = {"workers.jobs.reconcile_batch": "reconcile", "workers.handler_jobs.run_handler": "handler run",
        FORWARD_FUNC: "forwarded message", "workers.archive_jobs.archive_batch": "archive"}


def count(queue: Queue) -> int:
    """Return how many jobs wait in the failed registries of ``queue`` and its side queues."""
    return sum(q.failed_job_registry.count for q in job_queues.family(queue))


def failed_jobs(queue: Queue, *, limit: int = 100) -> list[dict[str, Any]]:
    """Return the newest failed jobs of every queue: id, function, batch id, error (last line), attempts, when."""
    scored: list[tuple[float, str]] = []
    for q in job_queues.family(queue):
        key = q.failed_job_registry.key
        scored += [(score, member.decode() if isinstance(member, bytes) else member) for member, score in
                   q.connection.zrevrange(key, 0, max(limit, 1) - 1, withscores=True)]
    ids = [job_id for _score, job_id in sorted(scored, reverse=True)[:max(limit, 1)]]
    jobs = Job.fetch_many(ids, connection=queue.connection, serializer=queue.serializer)
    return [describe(job) for job in jobs if job is not None]


def describe(job: Job) -> dict[str, Any]:
    """Return what a person needs to know about a failed job."""
    error = _error(job)
    # workers.jobs.count_failure keeps the count (RQ's exception retries keep none).
    failures = int(job.meta.get("failures") or 0) if isinstance(job.meta, dict) else 0
    args = job.args if isinstance(job.args, (list, tuple)) else ()
    last = error.strip().splitlines()[-1] if error and error.strip() else None
    kind = kind_of(last)
    attempts = max(failures, 1)
    work = WORK.get(job.func_name, job.func_name)
    return {
        "job_id": job.id,
        "function": job.func_name,
        "work": work,
        # Reconcile, handler and archive jobs name their batch first; a forwarding job names its message.
        "batch_id": args[0] if args and isinstance(args[0], str) and work != WORK[FORWARD_FUNC] else None,
        "error": last,
        "attempts": attempts,
        # Said as it happened: one attempt of an error no retry can fix is not "every retry".
        "summary": f"failed after {attempts} attempt{'s' if attempts != 1 else ''}"
                   + (" (not retried: retrying cannot fix this)" if kind in ("key_refused", "payment") else ""),
        "kind": kind,
        "next_step": NEXT_STEPS[kind],
        "failed_at": iso(job.ended_at.timestamp()) if job.ended_at else None,
        "enqueued_at": iso(job.enqueued_at.timestamp()) if job.enqueued_at else None,
    }


def for_batch(queue: Queue, batch_id: str, *, scan: int = 1000) -> dict[str, Any] | None:
    """Return the newest failed job about ``batch_id`` among the newest ``scan`` ones, or None."""
    for job in failed_jobs(queue, limit=scan):
        if job["batch_id"] == batch_id:
            return job
    return None


def requeue(queue: Queue, job_id: str) -> bool:
    """Put one failed job back on its own queue; False when it is in no failed registry of the family."""
    return any(_requeue_in(q, job_id) for q in job_queues.family(queue))


def requeue_all(queue: Queue) -> int:
    """Requeue every failed job of every queue; return how many went back."""
    return sum(_requeue_in(q, job_id) for q in job_queues.family(queue)
               for job_id in q.failed_job_registry.get_job_ids())


def _requeue_in(queue: Queue, job_id: str) -> bool:
    try:
        queue.failed_job_registry.requeue(job_id)
    except (InvalidJobOperation, NoSuchJobError):
        return False
    return True


def _error(job: Job) -> str | None:
    """The failure's traceback text: from RQ's latest result, else the job's own record."""
    result = job.latest_result()
    if result is not None and result.type == Result.Type.FAILED:
        return result.exc_string
    return getattr(job, "_exc_info", None)
