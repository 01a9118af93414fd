"""Concurrent reconciles inside one worker: a reconcile job claims more due reconcile jobs and runs them at once.

A retrieve waits 50-200 ms on a real gateway, and RQ's SimpleWorker runs one
job at a time, so one process reconciled at most 5-20 batches a second. A
reconcile job that finds more reconcile jobs waiting in its queue claims
them (``ClaimJobs``: atomically popped from RQ's queue list and marked
started, so an event arriving meanwhile queues a fresh job instead of
coalescing into a claimed one) and runs them on up to
``AISTATS_RECONCILE_CONCURRENCY - 1`` threads beside its own, claiming more
as threads free up and deliveries arrive, until none runs and none waits.

Each claimed job runs through the very same function RQ would call
(``workers.jobs.reconcile_batch``, with the claimed job as the current job),
so BEGIN (lock, slot) / COMMIT, per-batch single flight, coalescing, the
ledger's exactly-once and the retry policy are unchanged; its end is written
as RQ's worker writes it (finished: result and registry; failed: RQ's own
``Job.retry`` or the failed registry). A claimed job is also entered in RQ's
StartedJobRegistry (as ``{job id}:claimed``, expiring after the job timeout
plus a minute, removed when it ends), so a worker killed while holding
claimed jobs leaves them where RQ's own maintenance finds abandoned work: any
worker's cleanup retries them through ``Job.retry`` (our jobs carry retries).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager

from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus, _job_stack
from rq.utils import now

from aistats_hooks.errors import AIStatsError
from aistats_hooks.queueing import JOB_TIMEOUT, describe
from aistats_hooks.store.script import Script, text

log = logging.getLogger("workers.batch_jobs")
# Seconds a job keeps claiming more: well inside queueing.JOB_TIMEOUT (120), so the job that claimed
# them is never killed by RQ's timeout while its threads still run.
CLAIM_SECONDS = 45.0
# Seconds between looks at the queue while claimed jobs run (one is also taken as soon as a job ends).
POLL_SECONDS = 0.05
_local = threading.local()


class ClaimJobs(Script):
    """Pop up to N waiting reconcile jobs from RQ's queue list and mark them started, atomically.

    KEYS[1] the queue list, [2] its StartedJobRegistry. ARGV: [1] how many, [2] the job key
    prefix, [3] the reconcile jobs' description prefix, [4] RQ's queued status, [5] RQ's started
    status, [6] when an unfinished claim counts as abandoned (unix seconds). Other jobs met on
    the way (sweeps, handler jobs) go back to the front, in their order.
    """

    LUA = """
local want = tonumber(ARGV[1])
local claimed, others = {}, {}
while #claimed < want and #others < want do
  local id = redis.call('LPOP', KEYS[1])
  if not id then break end
  local job = redis.call('HMGET', ARGV[2] .. id, 'description', 'status')
  if job[1] and job[2] == ARGV[4] and string.sub(job[1], 1, #ARGV[3]) == ARGV[3] then
    redis.call('HSET', ARGV[2] .. id, 'status', ARGV[5])
    redis.call('ZADD', KEYS[2], ARGV[6], id .. ':' .. 'claimed')
    claimed[#claimed + 1] = id
  else
    others[#others + 1] = id
  end
end
for i = #others, 1, -1 do redis.call('LPUSH', KEYS[1], others[i]) end
return claimed
"""

    def call(self, queue: Queue, count: int) -> list[str]:
        """Return the ids of the jobs claimed (at most ``count``)."""
        prefix = queue.job_class.redis_job_namespace_prefix
        abandoned_at = time.time() + JOB_TIMEOUT + 60  # as RQ's worker: the job's timeout and a minute
        ids = self.run([queue.key, queue.started_job_registry.key],
                       [count, prefix, describe(""), JobStatus.QUEUED.value, JobStatus.STARTED.value, abandoned_at])
        return [text(i) for i in ids]


def claiming() -> bool:
    """True inside a claimed job's thread: it must not claim more itself."""
    return bool(getattr(_local, "claimed", False))


@contextmanager
def alongside(redis: Redis, queue: Queue | None, concurrency: int,
              run: Callable[[str, bool], str]) -> Iterator[None]:
    """Run more waiting reconcile jobs on threads while the body runs its own.

    ``run(batch_id, force)`` is the job function RQ calls. Nothing is claimed inside a claimed
    job, without a queue, or at a concurrency of 1.
    """
    if claiming() or queue is None or concurrency <= 1:
        yield
        return
    feeder = threading.Thread(target=_feed, args=(ClaimJobs(redis), queue, concurrency - 1, run),
                              name="reconcile-feeder", daemon=True)
    feeder.start()
    try:
        yield
    finally:
        feeder.join()


def _feed(script: ClaimJobs, queue: Queue, size: int, run: Callable[[str, bool], str]) -> int:
    """Keep up to ``size`` claimed jobs running, claiming more as deliveries arrive; return how many ran.

    Stops claiming when nothing runs and nothing waits, or after ``CLAIM_SECONDS``; then lets the
    running ones finish. A storm arrives over seconds, so the pool grows as the queue does.
    """
    deadline = time.monotonic() + CLAIM_SECONDS
    running: set[Future] = set()
    ran = 0
    with ThreadPoolExecutor(max_workers=size, thread_name_prefix="reconcile") as pool:
        while True:
            running = {f for f in running if not f.done()}
            free = size - len(running)
            claimed: list[str] = []
            if free and time.monotonic() < deadline:
                try:
                    claimed = script.call(queue, free)
                except Exception:  # Redis trouble: finish what runs, claim nothing more
                    log.exception("could not claim reconcile jobs")
                    deadline = 0.0
            for job_id in claimed:
                running.add(pool.submit(_run_claimed, queue, job_id, run))
            ran += len(claimed)
            if not running:
                return ran
            wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)


def _run_claimed(queue: Queue, job_id: str, run: Callable[[str, bool], str]) -> None:
    _local.claimed = True
    try:
        _run_one(queue, job_id, run)
        queue.connection.zrem(queue.started_job_registry.key, claim_entry(job_id))
    except Exception:  # a Redis error writing a job's end must not stop the others
        log.exception("could not record the end of claimed job %s", job_id)


def claim_entry(job_id: str) -> str:
    """The claimed job's StartedJobRegistry entry (RQ reads the job id before the colon)."""
    return f"{job_id}:claimed"


def _run_one(queue: Queue, job_id: str, run: Callable[[str, bool], str]) -> None:
    """Run one claimed job as RQ's worker would: the job function, then its finished or failed end."""
    try:
        job = Job.fetch(job_id, connection=queue.connection, serializer=queue.serializer)
    except NoSuchJobError:
        return  # deleted while waiting (e.g. `forget`): RQ would have skipped it too
    batch_id = job.args[0] if job.args else job.kwargs.get("batch_id")
    force = bool(job.kwargs.get("force", False))
    job.started_at = now()
    _job_stack.push(job)
    try:
        result = run(batch_id, force)
    except Exception as exc:
        job.ended_at = now()
        _failed(queue, job, exc)
    else:
        job.ended_at = now()
        job._result = result
        result_ttl = job.get_result_ttl(500)
        with queue.connection.pipeline() as pipe:
            if result_ttl != 0:
                job._handle_success(result_ttl, pipeline=pipe)
            job.cleanup(result_ttl, pipeline=pipe, remove_from_queue=False)  # ttl 0 (ours): the job is deleted
            pipe.execute()
    finally:
        _job_stack.pop()


def _failed(queue: Queue, job: Job, exc: BaseException) -> None:
    """Retry ``job`` through RQ's own ``Job.retry`` (the job function set its intervals) or fail it visibly.

    Logged as the worker's own failures are (workers/log_filter.py): a retried transient
    gateway error is one WARNING line, anything else an ERROR with its traceback.
    """
    exc_string = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if isinstance(exc, AIStatsError) and exc.retryable and job.should_retry:
        log.warning("job %s (%s): transient gateway error, RQ retries it: %s: %s", job.id, job.func_name,
                    type(exc).__name__, exc)
    else:
        log.error("job %s (%s) failed: %s", job.id, job.func_name, exc_string.strip())
    with queue.connection.pipeline() as pipe:
        if job.should_retry:
            job.retry(queue, pipe)
        else:
            job.set_status(JobStatus.FAILED, pipeline=pipe)
            job._handle_failure(exc_string, pipeline=pipe)
        pipe.execute()
