"""Concurrent reconciles inside one worker: a running reconcile job takes due batches ahead of their jobs.

A retrieve waits 50-200 ms on a real gateway, and RQ's SimpleWorker runs one job at a
time. So while a reconcile job runs, a feeder thread takes batches from ``{p}:due``
(the set the service owns: a batch is in it while its pending slot names a waiting
job) and reconciles them on up to ``AISTATS_RECONCILE_CONCURRENCY - 1`` threads,
taking more as threads free up and deliveries arrive, until none runs and none is due.

RQ is not touched: each batch's own job stays in RQ's queue and still runs. Taken
ahead, the batch's run freed the slot (BEGIN) and, once done, marks the job
(``{p}:ahead:{job id}``), so that job finds its batch done and nothing new, and ends at
once (``Outcome.SUPERSEDED``); an RQ retry or requeue of a job never marked runs as
usual. If the run ahead fails, the slot is given back to the job, which then runs it
with RQ's retries, failure registry and requeue (workers/jobs.py). A worker killed
mid-run leaves the same job to do it.
Measured in ``make bench`` (latency phase); see bench/RESULTS.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager

from redis import Redis
from redis.exceptions import RedisError

from aistats_hooks.keys import Keys
from aistats_hooks.store.coalesce import PENDING_TTL
from aistats_hooks.store.script import Script, text

log = logging.getLogger("workers.drain")
# Seconds a job keeps taking more: well inside queueing.JOB_TIMEOUT, so RQ never kills the job
# that runs them while its threads still run.
TAKE_SECONDS = 45.0
# Seconds between looks at the due set while runs go on (one is also taken as soon as a run ends).
POLL_SECONDS = 0.05
_local = threading.local()


class TakeDue(Script):
    """Take up to N due batches: remove them from the due set, with the job id each one's slot names."""

    LUA = """
-- KEYS[1] the due set {p}:due; ARGV[1] how many, ARGV[2] now (ms), ARGV[3] the key prefix,
-- ARGV[4] the batch the calling job runs itself (left alone).
-- Returns {batch id, job id, ...}; a batch whose slot is already free (its job started) is dropped.
local taken = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[1]) + 1)
for _, batch in ipairs(due) do
  if batch ~= ARGV[4] and #taken < 2 * tonumber(ARGV[1]) then
    redis.call('ZREM', KEYS[1], batch)
    local job = redis.call('GET', ARGV[3] .. ':pending:' .. batch)
    if job then
      taken[#taken + 1] = batch
      taken[#taken + 1] = job
    end
  end
end
return taken
"""

    def call(self, keys: Keys, count: int, own: str = "") -> list[tuple[str, str]]:
        """Return up to ``count`` (batch id, job id) pairs, never the batch ``own``."""
        flat = self.run([keys.due], [count, int(time.time() * 1000), keys.prefix, own])
        return [(text(flat[i]), text(flat[i + 1])) for i in range(0, len(flat), 2)]


class Ahead:
    """How many batches a feeder ran ahead, once it has ended."""

    ran: int = 0


def running_ahead() -> bool:
    """True inside a run-ahead thread: it must not start a feeder itself."""
    return bool(getattr(_local, "ahead", False))


@contextmanager
def alongside(redis: Redis, keys: Keys, concurrency: int, run: Callable[[str, str], object],
              ahead: Ahead | None = None, own: str = "") -> Iterator[None]:
    """Reconcile due batches on threads while the body runs its own job (of batch ``own``); count them in ``ahead``.

    ``run(batch_id, job_id)`` reconciles one batch as that job would, raising on failure.
    Nothing is taken inside a run-ahead thread or at a concurrency of 1.
    """
    if running_ahead() or concurrency <= 1:
        yield
        return
    counted = ahead if ahead is not None else Ahead()

    def feeder_main() -> None:
        counted.ran = feed(redis, keys, TakeDue(redis), concurrency - 1, run, own=own)

    feeder = threading.Thread(target=feeder_main, name="reconcile-feeder", daemon=True)
    feeder.start()
    try:
        yield
    finally:
        feeder.join()


def feed(redis: Redis, keys: Keys, script: TakeDue, size: int, run: Callable[[str, str], object],
         seconds: float = TAKE_SECONDS, own: str = "") -> int:
    """Keep up to ``size`` batches reconciling, taking more as they become due; return how many ran."""
    deadline = time.monotonic() + seconds
    running: set[Future] = set()
    ran = 0
    with ThreadPoolExecutor(max_workers=size, thread_name_prefix="reconcile") as pool:
        while True:
            running = {f for f in running if not f.done()}
            free = size - len(running)
            taken: list[tuple[str, str]] = []
            if free and time.monotonic() < deadline:
                try:
                    taken = script.call(keys, free, own)
                except RedisError as exc:  # finish what runs, take nothing more: the jobs remain
                    log.warning("could not take due batches: %s: %s", type(exc).__name__, exc)
                    deadline = 0.0
            for batch_id, job_id in taken:
                running.add(pool.submit(_ahead, redis, keys, batch_id, job_id, run))
            ran += len(taken)
            if not running:
                return ran
            wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)


def _ahead(redis: Redis, keys: Keys, batch_id: str, job_id: str, run: Callable[[str, str], object]) -> None:
    _local.ahead = True
    try:
        run(batch_id, job_id)
        redis.set(keys.ahead(job_id), "1", ex=PENDING_TTL)  # the job has nothing left to do
    except Exception as exc:  # the batch's own job runs it, with RQ's retries
        log.info("batch %s: run ahead failed (%s: %s); its job %s retries it", batch_id, type(exc).__name__,
                 exc, job_id)
        try:
            redis.set(keys.pending(batch_id), job_id, nx=True, ex=PENDING_TTL)  # the slot back to the job
        except RedisError:
            pass  # the job still runs: its events are unsettled, so it is not superseded
