"""RQ job functions. Thin and idempotent: they take ids and call the library.

Retries use RQ's own mechanism (each job is enqueued with ``Retry``); these
functions only adjust it: a 429 waits for its Retry-After, an auth error (or
any other error that retrying cannot fix, such as 402) is not retried, and the last failed attempt applies the webhook payload as a
marked, provisional fallback before failing visibly. A 404 is retried after
``NOT_FOUND_DELAYS`` (a batch just created can be briefly unknown to a replica)
until ``reconcile.NOT_FOUND_ATTEMPTS`` answers in a row mark it not_found.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time

from redis.exceptions import RedisError
from rq import get_current_job

from aistats_hooks import discovery, handlers, reconcile, telemetry, tracing
from aistats_hooks.effects import alerts, archiving, dispatch, forwarding
from aistats_hooks.errors import AIStatsError, AuthenticationError, RateLimitError
from aistats_hooks.reconcile import NotFoundYet, Outcome, apply_fallback

from . import context, drain

log = logging.getLogger("workers.jobs")
# Seconds before retrying a batch after its first, second 404: three answers over ~5 minutes.
NOT_FOUND_DELAYS = (60, 240)


def reconcile_batch(batch_id: str, force: bool = False) -> str:
    """Reconcile one batch with the gateway's truth (and, beside it, more due ones: workers/drain.py)."""
    ctx = context.current()
    concurrency = ctx.settings.reconcile_concurrency if get_current_job() is not None else 1
    ahead = drain.Ahead()
    try:
        with drain.alongside(ctx.store.redis, ctx.store.keys, concurrency, run_ahead, ahead, own=batch_id), \
                tracing.reconcile_span(ctx.store.redis, ctx.store.keys, batch_id):
            return _reconcile_batch(batch_id, force)
    except Exception:
        count_failure(get_current_job())
        raise
    finally:
        if ahead.ran:  # their transitions, once they all ended
            _dispatch(ctx)


def run_ahead(batch_id: str, job_id: str) -> str:
    """Reconcile ``batch_id`` ahead of its waiting job ``job_id`` (workers/drain.py); raise on any failure."""
    ctx = context.current()
    started = time.monotonic()
    try:
        with tracing.reconcile_span(ctx.store.redis, ctx.store.keys, batch_id):
            outcome = reconcile.reconcile_batch(ctx.store, ctx.client, batch_id, job_id=job_id).value
            tracing.annotate(outcome=outcome, ran_ahead=True)
            return outcome
    finally:
        with contextlib.suppress(RedisError):
            telemetry.observe_reconcile(ctx.store, time.monotonic() - started)


def _reconcile_batch(batch_id: str, force: bool) -> str:
    ctx = context.current()
    job = get_current_job()
    started = time.monotonic()
    try:
        outcome = reconcile.reconcile_batch(ctx.store, ctx.client, batch_id, job_id=job.id if job else "",
                                            force=force).value
        tracing.annotate(outcome=outcome, attempt=int(job.meta.get("failures") or 0) + 1 if job else None)
        return outcome
    except NotFoundYet as exc:
        if job is not None:
            _wait_at_least(job, NOT_FOUND_DELAYS[min(exc.misses, len(NOT_FOUND_DELAYS)) - 1])
        raise
    except AuthenticationError:
        # A bad API key will not fix itself: fail now, into the failed registry.
        ctx.store.incr("upstream", "auth_failed")
        if job is not None:
            job.retries_left = 0
        raise
    except RateLimitError as exc:
        if job is not None and exc.retry_after is not None:
            _wait_at_least(job, exc.retry_after)
        _fallback_if_last(ctx, job, batch_id)
        raise
    except AIStatsError as exc:
        if exc.retryable:
            _fallback_if_last(ctx, job, batch_id)
        elif job is not None:
            # 402, 400, 409...: retrying the same call cannot succeed; fail visibly now.
            job.retries_left = 0
        raise
    finally:
        with contextlib.suppress(RedisError):  # a metric must not fail the job
            telemetry.observe_reconcile(ctx.store, time.monotonic() - started)
        _dispatch(ctx)


def sweep(limit: int = 500) -> int:
    """The backstop: queue a reconcile of open batches not reconciled for a while, within the hour's allowance.

    Oldest first, at most AISTATS_SWEEP_MAX_PER_HOUR an hour (discovery finds what changed; this catches
    what it could not see). Unknown batches past their retention are pruned.
    """
    ctx = context.current()
    alerts.mark(ctx.store.redis, ctx.store.keys, "sweep", False)  # a try; the success is marked at the end
    settings = ctx.settings
    due = ctx.store.due_for_sweep(time.time() - settings.stale_after, limit=limit)
    due = due[:ctx.store.open_batches.allowance(settings.sweep_max_per_hour, len(due))]
    pending_age = min(settings.stale_after, discovery.PENDING_MAX_AGE)
    queued = sum(ctx.store.request_reconcile(b, max_pending_age=pending_age) == "queued" for b in due)
    ctx.store.incr("sweep", "queued", queued)
    # Batches the gateway does not know leave after their retention, indexes and all.
    pruned = ctx.store.open_batches.prune_unknown(time.time() - ctx.settings.unknown_retention, limit=limit)
    if pruned:
        ctx.store.incr("sweep", "pruned_unknown", pruned)
    alerts.mark(ctx.store.redis, ctx.store.keys, "sweep", True)
    _dispatch(ctx)
    return queued


def count_failure(job) -> None:
    """Count a failed attempt in the job's meta (RQ's retries keep no count): ``failed`` shows it."""
    if job is None:
        return
    with contextlib.suppress(RedisError):
        job.meta["failures"] = int(job.meta.get("failures") or 0) + 1
        job.save_meta()


def _dispatch(ctx: context.Context) -> None:
    """Turn the transitions stored so far into handler, forwarding and archive jobs, each on its own queue.

    Only the enqueueing runs here (the sweep's call recovers a crashed dispatch); the side effects run on
    ``<queue>-handlers``, ``<queue>-forward`` and ``<queue>-archive`` (aistats_hooks/job_queues.py).
    """
    try:
        if handlers.registered():
            dispatch.dispatch(ctx.store.redis, ctx.store.keys, ctx.store.queue, ctx.settings)
        if ctx.settings.forward_urls:  # forwarding: a built-in consumer of the same feed, fanned out on its queue
            forwarding.request_dispatch(ctx.store.redis, ctx.store.keys, ctx.store.queue, ctx.settings)
        if ctx.settings.archive_url:  # archiving: another consumer of the feed, on its own queue
            archiving.dispatch(ctx.store.redis, ctx.store.keys, ctx.settings)
    except RedisError as exc:  # the next reconcile or sweep dispatches them: the feed keeps them
        log.warning("could not dispatch handler jobs now: %s: %s", type(exc).__name__, exc)


def _wait_at_least(job, seconds: float) -> None:
    """Make RQ's next retry of ``job`` wait at least ``seconds``."""
    intervals = list(job.retry_intervals or [0])
    left = job.retries_left or 0
    index = max(len(intervals) - left, 0)
    if index < len(intervals):
        intervals[index] = max(intervals[index], math.ceil(seconds))
        job.retry_intervals = intervals


def _fallback_if_last(ctx: context.Context, job, batch_id: str) -> None:
    """On the last attempt, keep the payload's state (marked) rather than nothing."""
    if job is None or not job.retries_left:
        outcome = apply_fallback(ctx.store, batch_id)
        log.warning("retrieve kept failing for %s; fallback: %s", batch_id, outcome.value)
        if outcome == Outcome.FALLBACK:
            ctx.store.incr("upstream", "fallback")
