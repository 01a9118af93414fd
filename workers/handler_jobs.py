"""The RQ job that runs one handler on one transition of one batch.

Enqueued by ``aistats_hooks.effects.dispatch`` (never on the acknowledgement path),
retried by RQ with backoff when the handler raises, then left in RQ's failed
registry, where ``failed`` / ``requeue`` find it like a failed reconcile. A
run that already succeeded (``{p}:hdone:{job id}`` exists) is skipped, so a
requeued or re-dispatched job never makes a handler succeed twice.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time

from redis.exceptions import RedisError
from rq import get_current_job

from aistats_hooks import handlers, tracing

from aistats_hooks.effects import handler_runs
from aistats_hooks.effects.dispatch import job_id
from aistats_hooks.errors import ConfigError
from aistats_hooks.sdk import iter_results_file
from aistats_hooks.rules.timestamps import iso

from . import context
from .jobs import count_failure

log = logging.getLogger("workers.handlers")


@tracing.traced_job("handler")
def run_handler(batch_id: str, transition: str, handler_name: str, entry_id: str) -> str:
    """Run ``handler_name`` on ``transition`` of ``batch_id`` (a change-feed entry); return what happened."""
    ctx = context.current()
    store = ctx.store
    job = get_current_job()
    jid = job.id if job is not None else job_id(store.keys, entry_id, handler_name)
    if store.redis.exists(store.keys.handler_done(jid)):
        return "already_done"
    registered = handlers.get(handler_name)
    if registered is None:
        if job is not None:
            job.retries_left = 0  # a module not loaded in this worker will not load on a retry
        raise ConfigError("AISTATS_HANDLERS", f"handler {handler_name!r} is not registered in this worker")
    attempt = int(job.meta.get("failures") or 0) + 1 if job is not None else 1
    folder = tempfile.mkdtemp(prefix="aistats-handler-")
    hctx = handlers.HandlerContext(
        batch_id=batch_id, transition=transition, handler=handler_name, change_id=entry_id, attempt=attempt,
        idempotency_key=handlers.idempotency_key(batch_id, transition, handler_name, entry_id),
        log=logging.getLogger(f"handlers.{handler_name}"),
        _results=lambda: _results(ctx, batch_id, folder), _download=ctx.client.download_file,
    )
    started = time.monotonic()
    try:
        registered.func(store.get(batch_id) or {"id": batch_id}, hctx)
    except Exception as exc:
        # The handler's own failure: logged with its batch, retried by RQ; reconciliation is untouched.
        log.warning("handler %s failed on %s of %s (attempt %d): %s: %s", handler_name, transition, batch_id,
                    attempt, type(exc).__name__, exc, extra={"batch_id": batch_id})
        count_failure(job)
        _record(ctx, batch_id, jid, handler_name, transition, "failed", attempt, started, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    store.redis.set(store.keys.handler_done(jid), iso(time.time()), ex=ctx.settings.event_retention)
    _record(ctx, batch_id, jid, handler_name, transition, "done", attempt, started)
    log.info("handler %s ran on %s of %s in %.0f ms", handler_name, transition, batch_id,
             (time.monotonic() - started) * 1000, extra={"batch_id": batch_id})
    return "done"


def _record(ctx: context.Context, batch_id: str, jid: str, handler: str, transition: str, status: str, attempt: int,
            started: float, error: str | None = None) -> None:
    """What the dashboard shows of this run; a Redis error here must not change the run's outcome."""
    try:
        handler_runs.record(ctx.store.redis, ctx.store.keys, batch_id, jid, handler=handler, transition=transition,
                            status=status, attempt=attempt, ms=(time.monotonic() - started) * 1000,
                            retention=ctx.settings.event_retention, error=error)
    except RedisError as exc:
        log.warning("could not record handler run %s: %s", jid, exc)


def _results(ctx: context.Context, batch_id: str, folder: str):
    """Download the batch's results once per run (the gateway allows 10 downloads per 30 minutes), then read the file."""
    path = os.path.join(folder, "results.jsonl")
    if not os.path.exists(path):
        ctx.client.download_results(batch_id, path)
    return iter_results_file(path)
