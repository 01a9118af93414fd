"""Chaos: every transition ran the counting handler exactly once (``bench.counting_handlers``).

The workers load ``bench.counting_handlers`` (AISTATS_HANDLERS), which
records each successful run per change-feed entry. Once the batches have
converged, the handler jobs (ordered, retried, abandoned by SIGKILLed
workers and retried again) are given time to drain; then every entry of the
change feed must have exactly one run: ``handler_runs_missing`` counts
entries with none, ``handler_runs_duplicated`` the extra runs.
"""

from __future__ import annotations

import time

from rq import Queue
from rq.registry import DeferredJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from aistats_hooks import job_queues
from aistats_hooks.effects.dispatch import GROUP
from bench.counting_handlers import runs_key

HANDLERS = "bench.counting_handlers"


def _handler_jobs_left(queue: Queue) -> int:
    """Handler jobs not finished yet: queued, deferred (waiting on an earlier one), scheduled or running."""
    marker = "-h-"
    ids = list(queue.get_job_ids())
    for registry in (DeferredJobRegistry, ScheduledJobRegistry, StartedJobRegistry):
        ids += registry(queue=queue).get_job_ids()
    # Dequeued by a worker killed before it started them: RQ's maintenance retries them (IntermediateQueue.cleanup).
    ids += queue.intermediate_queue.get_job_ids()
    # Dependents made ready whose enqueue did not happen (a crash, a lost race): RQ's maintenance enqueues them.
    ids += queue.ready_job_registry.get_job_ids()
    return sum(marker in job_id for job_id in ids)


def _undispatched(redis, stream: str) -> int:
    """Feed entries the dispatcher has not turned into jobs yet (not delivered to its group, or not acked).

    The next reconcile or sweep dispatches them (the cron's sweep runs every AISTATS_SWEEP_INTERVAL).
    """
    groups = {g["name"].decode() if isinstance(g["name"], bytes) else g["name"]: g
              for g in redis.xinfo_groups(stream)} if redis.exists(stream) else {}
    group = groups.get(GROUP)
    if group is None:
        return redis.xlen(stream) if redis.exists(stream) else 0
    last = group["last-delivered-id"]
    last = last.decode() if isinstance(last, bytes) else last
    undelivered = len(redis.xrange(stream, f"({last}", "+")) if last != "0-0" else redis.xlen(stream)
    return undelivered + int(group["pending"])


def wait_for_groups(stack, names: tuple[str, ...], timeout: float = 60.0) -> bool:
    """Wait until the workers created the feed's consumer groups (they do at start).

    Handlers and forwarding see the transitions stored after their group
    exists, so traffic starts once the workers are up, as it would in production.
    """
    redis = stack.redis()
    stream = f"{stack.prefix}:changes"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if redis.exists(stream):
            have = {(g["name"].decode() if isinstance(g["name"], bytes) else g["name"])
                    for g in redis.xinfo_groups(stream)}
            if set(names) <= have:
                return True
        time.sleep(0.2)
    return False


def check(stack, *, timeout: float = 300.0, on_wait=None) -> dict:
    """Wait for handler work to drain (up to ``timeout``), then compare the feed with the runs."""
    redis = stack.redis()
    queue = job_queues.of(Queue(stack.prefix, connection=redis), "handlers")
    stream = f"{stack.prefix}:changes"
    deadline = time.monotonic() + timeout
    left = _handler_jobs_left(queue) + _undispatched(redis, stream)
    while left and time.monotonic() < deadline:
        if on_wait:
            on_wait(left)
        time.sleep(2)
        left = _handler_jobs_left(queue) + _undispatched(redis, stream)
    entries = redis.xrange(f"{stack.prefix}:changes", "-", "+")
    expected = {f"{f[b'batch_id'].decode()}|{f[b'transition'].decode()}|{i.decode()}" for i, f in entries}
    runs = {k.decode(): int(v) for k, v in redis.hgetall(runs_key(stack.prefix)).items()}
    missing = sorted(expected - set(runs))
    return {
        "handler_runs_missing_ids": missing[:20],
        "transitions": len(expected),
        "handler_runs": sum(runs.values()),
        "handler_runs_missing": len(missing),
        "handler_runs_duplicated": sum(n - 1 for n in runs.values() if n > 1),
        "handler_runs_unexpected": len(set(runs) - expected),
        "handler_jobs_left": left,  # handler jobs not finished, and feed entries not dispatched
    }
