"""Turn new transitions into handler jobs: one RQ job per (batch, transition, handler), in order.

The change feed is the source of truth: a consumer group (``handlers``) on
``{p}:changes`` remembers what was dispatched. ``dispatch`` runs after every
reconcile and on every sweep; one process at a time (a lock), so entries are
taken in stream order. Each job's id is derived from the entry id and the
handler, so a crash between enqueueing and acknowledging the entry re-runs
the dispatch without a second job. Per batch and handler a job depends (RQ's
``depends_on``) on the previous one: a handler sees a batch's transitions in
order, and a failed run holds the later ones back until it is requeued.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from redis import Redis
from redis.exceptions import ResponseError
from rq import Queue, Retry
from rq.job import Job

from .. import job_queues, tracing
from ..config import Settings
from ..handlers import Registered, for_transition
from ..keys import Keys
from ..store.process_lock import hold

log = logging.getLogger("aistats_hooks.effects.dispatch")
GROUP = "handlers"
CONSUMER = "dispatcher"
HANDLER_FUNC = "workers.handler_jobs.run_handler"
LOCK_MS = 30_000
RESULT_TTL = 86400  # a finished job stays visible a day (its successor's depends_on reads it)
FAILURE_TTL = 7 * 86400
# Backoff of a failing handler: 10 s, 1 min, 5 min, 30 min, 2 h, then every 2 h.
BACKOFF = [10, 60, 300, 1800, 7200]


def ensure_group(redis: Redis, keys: Keys) -> None:
    """Create the dispatcher's consumer group (and the stream) unless they exist.

    A new group starts at the stream's end: handlers registered today run on
    transitions from now on, not on every batch the feed still remembers.
    """
    try:
        redis.xgroup_create(keys.changes, GROUP, id="$", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def job_id(keys: Keys, entry_id: str, handler: str) -> str:
    """The id of the job running ``handler`` on one change-feed entry (the same on every dispatch)."""
    digest = hashlib.sha256(f"{entry_id}\n{handler}".encode()).hexdigest()[:24]
    return f"{keys.prefix.replace(':', '_')}-h-{digest}"


def dispatch(redis: Redis, keys: Keys, queue: Queue, settings: Settings, *, limit: int = 500) -> int:
    """Enqueue handler jobs (on the handlers queue beside ``queue``) for every undispatched transition; return how many.

    A process that finds the lock taken leaves its entries to the holder, so the
    holder looks again after releasing it: an entry appended meanwhile is not left
    waiting for the next sweep.
    """
    queue = job_queues.of(queue, "handlers")  # never on the reconcile queue: a slow handler holds no batch back
    enqueued = 0
    for _ in range(3):
        with hold(redis, keys.dispatch_lock, LOCK_MS) as held:
            if not held:
                return enqueued  # another process is dispatching; it takes these entries too
            ensure_group(redis, keys)
            # Our own pending entries first (a dispatcher that died before acknowledging), then new ones.
            for start in ("0", ">"):
                while True:
                    reply = redis.xreadgroup(GROUP, CONSUMER, {keys.changes: start}, count=limit) or []
                    items = [item for _stream, batch in reply for item in batch]
                    for raw_id, fields in items:
                        entry_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
                        enqueued += _enqueue_entry(redis, keys, queue, settings, entry_id, fields)
                        redis.xack(keys.changes, GROUP, entry_id)
                    if start == "0" or len(items) < limit:
                        break
        if not _undelivered(redis, keys):
            break
    return enqueued


def _undelivered(redis: Redis, keys: Keys) -> bool:
    """Tell whether the feed holds an entry the group has not been given yet."""
    newest = redis.xrevrange(keys.changes, count=1)
    if not newest:
        return False
    for group in redis.xinfo_groups(keys.changes):
        name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
        if name == GROUP:
            last = group["last-delivered-id"]
            last = last.decode() if isinstance(last, bytes) else last
            newest_id = newest[0][0].decode() if isinstance(newest[0][0], bytes) else newest[0][0]
            return tuple(map(int, newest_id.split("-"))) > tuple(map(int, last.split("-")))
    return False


def _enqueue_entry(redis: Redis, keys: Keys, queue: Queue, settings: Settings, entry_id: str, fields: dict) -> int:
    text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()}
    batch_id, transition = text.get("batch_id", ""), text.get("transition", "")
    enqueued = 0
    for handler in for_transition(transition):
        enqueued += _enqueue_one(redis, keys, queue, settings, entry_id, batch_id, transition, handler)
    return enqueued


def _enqueue_one(redis: Redis, keys: Keys, queue: Queue, settings: Settings, entry_id: str, batch_id: str,
                 transition: str, handler: Registered) -> int:
    jid = job_id(keys, entry_id, handler.name)
    if redis.exists(Job.key_for(jid)):
        return 0  # dispatched before a crash: the job is there
    previous = redis.hget(keys.handler_last(batch_id), handler.name)
    previous = previous.decode() if isinstance(previous, bytes) else previous
    retries = settings.handler_retries
    queue.enqueue(
        HANDLER_FUNC, args=(batch_id, transition, handler.name, entry_id), job_id=jid,
        depends_on=[previous] if previous else None,
        retry=Retry(max=retries, interval=_intervals(retries)) if retries else None,
        job_timeout=settings.handler_timeout, result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
        description=f"{handler.name} on {transition} of {batch_id}", meta=tracing.job_meta(),
    )
    pipe = redis.pipeline(transaction=False)
    pipe.hset(keys.handler_last(batch_id), handler.name, jid)
    pipe.expire(keys.handler_last(batch_id), settings.event_retention)
    pipe.execute()
    return 1


def _intervals(retries: int) -> Sequence[int]:
    return [BACKOFF[min(i, len(BACKOFF) - 1)] for i in range(retries)]
