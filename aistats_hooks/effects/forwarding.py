"""Forwarding: every configured transition, sent once per destination, in order per batch, as a Standard Webhook.

A built-in consumer of the change feed: its own consumer group
(``forwarding``) on ``{p}:changes`` turns each entry whose transition is in
AISTATS_FORWARD_EVENTS into one message per destination, and each message
into one RQ job (``workers.forward_jobs.deliver``). The message id (also the
``webhook-id`` header and the job id) is derived from the entry id and the
destination, so it is the same on every retry and every re-dispatch: the
receiver deduplicates on it. Per destination and batch, a message's job
depends (RQ ``depends_on``) on the previous one, so ``batch.completed``
never reaches a destination before the batch's ``batch.created`` did, while
other batches are not held back. Messages and their attempts live in Redis
for AISTATS_EVENT_RETENTION (``{p}:fwd:*``).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

from redis import Redis
from redis.exceptions import ResponseError
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job

from .. import job_queues, tracing
from ..config import Settings
from ..keys import Keys
from ..store.process_lock import hold
from ..urls import masked

GROUP = "forwarding"
CONSUMER = "forwarder"
DELIVER_FUNC = "workers.forward_jobs.deliver"
DISPATCH_FUNC = "workers.forward_jobs.dispatch_messages"
WAKE_TTL = 60  # seconds: a dispatch job lost with its worker is asked for again after this
LOCK_MS = 30_000
TIMEOUT = 10.0  # seconds for one whole attempt (connect, send, headers, answer), however the destination drips
MAX_ANSWER_BYTES = 64 * 1024  # of a destination's answer read: the rest is never read
DROPPED = "destination no longer configured"
INTERRUPTED = "interrupted (the job's timeout or a stopped worker ended the attempt)"
# After an attempt times out, the destination's other messages skip their attempts (and retry later) this long:
# a destination that hangs costs one worker one attempt per pause, not one per message.
PAUSE_AFTER_TIMEOUT = 60
PAUSED = f"skipped: the destination timed out within the last {PAUSE_AFTER_TIMEOUT} s"
# Retries after the first attempt: they span more than a day, for a receiver down overnight.
BACKOFF = [5, 300, 1800, 7200, 18000, 36000, 36000]
# dropped: its destination left AISTATS_FORWARD_URLS; disabled: 410 Gone or `forwarding disable URL`.
STATUSES = ("pending", "retrying", "delivered", "failed", "disabled", "dropped")


def ensure_group(redis: Redis, keys: Keys) -> None:
    """Create the forwarding consumer group at the feed's end (forwarding starts from now), unless it exists."""
    try:
        redis.xgroup_create(keys.changes, GROUP, id="$", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def message_id(entry_id: str, url: str) -> str:
    """The message's id and ``webhook-id``: one per (feed entry, destination), the same on every retry."""
    return "msg_" + hashlib.sha256(f"{entry_id}\n{url}".encode()).hexdigest()[:32]


def destination_key(url: str) -> str:
    """A short, stable name for a destination (the URL may carry a credential)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else ("" if value is None else str(value))


def request_dispatch(redis: Redis, keys: Keys, queue: Queue, settings: Settings) -> bool:
    """Ask for a dispatch on the forward queue (one waiting at most); what a reconcile does, in one round trip.

    The fan-out (a message and a job per destination, each enqueue several
    round trips) runs on the forward queue's worker, not the reconcile's:
    forwarding to more destinations costs a reconcile nothing more. The
    job goes to the front of the queue, before messages already waiting.
    """
    if not settings.forward_urls or not redis.set(keys.forward("wake"), "1", nx=True, ex=WAKE_TTL):
        return False  # nothing to forward, or a dispatch is waiting already: it takes these entries too
    job_queues.of(queue, "forward").enqueue(DISPATCH_FUNC, at_front=True, result_ttl=0, failure_ttl=86400,
                                            job_timeout=LOCK_MS // 1000, description="forward dispatch",
                                            meta=tracing.job_meta())
    return True


def dispatch(redis: Redis, keys: Keys, queue: Queue, settings: Settings, *, limit: int = 500) -> int:
    """Turn undispatched feed entries into forwarding jobs (on the forward queue beside ``queue``); return how many."""
    if not settings.forward_urls:
        return 0
    queue = job_queues.of(queue, "forward")  # never on the reconcile queue: a slow destination holds no batch back
    with hold(redis, keys.forward("lock"), LOCK_MS) as held:
        if not held:
            return 0  # another process is dispatching; it takes these entries too
        ensure_group(redis, keys)
        enqueued = 0
        for start in ("0", ">"):  # our own unacknowledged entries first (a dispatcher that died), then new ones
            for _stream, items in redis.xreadgroup(GROUP, CONSUMER, {keys.changes: start}, count=limit) or []:
                for raw_id, fields in items:
                    entry_id = _text(raw_id)
                    text = {_text(k): _text(v) for k, v in fields.items()}
                    if text.get("transition") in settings.forward_events:
                        for url in settings.forward_urls:
                            enqueued += _enqueue(redis, keys, queue, settings, entry_id, text, url)
                    redis.xack(keys.changes, GROUP, entry_id)
        return enqueued


def _enqueue(redis: Redis, keys: Keys, queue: Queue, settings: Settings, entry_id: str, entry: dict,
             url: str) -> int:
    mid = message_id(entry_id, url)
    if redis.exists(Job.key_for(mid)):
        return 0  # dispatched before a crash: the job is there
    previous = _text(redis.hget(keys.forward("msg", mid), "after")) or None
    if not redis.exists(keys.forward("msg", mid)):
        previous = _store_message(redis, keys, settings, mid, entry_id, entry, url)
    # A predecessor's job that has expired (delivered long ago) cannot hold this one back.
    depends = [previous] if previous and redis.exists(Job.key_for(previous)) else None
    enqueue_job(queue, mid, job_id=mid, depends_on=depends)
    return 1


def _store_message(redis: Redis, keys: Keys, settings: Settings, mid: str, entry_id: str, entry: dict,
                   url: str) -> str | None:
    """Store a new message and make it the batch's latest for its destination; return the one before it.

    The predecessor is kept on the message (``after``): a dispatch that died
    before enqueueing the job finds it there, not in the pointer it moved.
    """
    batch_id = entry.get("batch_id", "")
    now_ms = int(time.time() * 1000)
    last_key = keys.forward("last", batch_id)
    previous = _text(redis.hget(last_key, destination_key(url))) or None
    message = {"id": mid, "entry_id": entry_id, "batch_id": batch_id, "transition": entry.get("transition", ""),
               "at": entry.get("at", ""), "url": url, "status": "pending", "created_ms": str(now_ms),
               "attempts": "[]", "after": previous or ""}
    ttl = settings.event_retention
    pipe = redis.pipeline(transaction=True)
    pipe.hset(keys.forward("msg", mid), mapping=message)
    pipe.expire(keys.forward("msg", mid), ttl)
    pipe.zadd(keys.forward("idx"), {mid: now_ms})
    pipe.zremrangebyscore(keys.forward("idx"), 0, now_ms - ttl * 1000)
    pipe.zadd(keys.forward("b", batch_id), {mid: now_ms})
    pipe.expire(keys.forward("b", batch_id), ttl)
    pipe.hset(last_key, destination_key(url), mid)
    pipe.expire(last_key, ttl)
    pipe.execute()
    return previous


def enqueue_job(queue: Queue, mid: str, *, job_id: str, depends_on: list[str] | None = None,
                force: bool = False) -> Job:
    """Enqueue the job delivering message ``mid`` (with the retry schedule)."""
    return queue.enqueue(
        DELIVER_FUNC, args=(mid,), kwargs={"force": force}, job_id=job_id, depends_on=depends_on,
        retry=Retry(max=len(BACKOFF), interval=list(BACKOFF)), job_timeout=int(TIMEOUT) + 30,
        result_ttl=2 * 86400, failure_ttl=7 * 86400, description=f"forward {mid}", meta=tracing.job_meta(),
    )


def load(redis: Redis, keys: Keys, mid: str) -> dict | None:
    """Return message ``mid`` with its attempts (a list), or None once it has expired."""
    raw = redis.hgetall(keys.forward("msg", mid))
    if not raw:
        return None
    message = {_text(k): _text(v) for k, v in raw.items()}
    message["attempts"] = json.loads(message.get("attempts") or "[]")
    message["created_ms"] = int(message.get("created_ms") or 0)
    return message


def public(message: dict) -> dict:
    """The message as the API, the CLI and the dashboard show it (the destination masked: ``urls.masked``)."""
    url = masked(message["url"])
    keep = ("id", "batch_id", "transition", "at", "status", "attempts")
    return {"destination": url, **{k: message.get(k) for k in keep}}


def messages(redis: Redis, keys: Keys, *, batch_id: str | None = None, status: str | None = None,
             since_ms: int = 0, limit: int = 1000) -> list[dict]:
    """Return messages (oldest first) of one batch or of all, optionally of one status, created since ``since_ms``."""
    index = keys.forward("b", batch_id) if batch_id else keys.forward("idx")
    ids = [_text(m) for m in redis.zrangebyscore(index, since_ms, "+inf")]
    out = []
    for mid in ids:
        message = load(redis, keys, mid)
        if message is not None and (status is None or message["status"] == status):
            out.append(message)
            if len(out) >= limit:
                break
    return out


def resolve(url: str, settings: Settings, known: list[str] = ()) -> str | None:
    """The configured (or ``known``) destination ``url`` names, as written or as shown masked; None if none."""
    candidates = list(dict.fromkeys([*settings.forward_urls, *known]))
    if url in candidates:
        return url
    matches = [c for c in candidates if masked(c) == url]
    return matches[0] if len(matches) == 1 else None


def pause(redis: Redis, keys: Keys, url: str) -> None:
    """Hold ``url``'s attempts back for ``PAUSE_AFTER_TIMEOUT`` seconds (one of them timed out)."""
    redis.set(keys.forward("paused", destination_key(url)), "1", ex=PAUSE_AFTER_TIMEOUT)


def paused(redis: Redis, keys: Keys, url: str) -> bool:
    """Tell whether ``url`` timed out within the last ``PAUSE_AFTER_TIMEOUT`` seconds."""
    return bool(redis.exists(keys.forward("paused", destination_key(url))))


def disabled(redis: Redis, keys: Keys) -> dict[str, str]:
    """Return the disabled destinations: URL -> why and when."""
    return {_text(k): _text(v) for k, v in redis.hgetall(keys.forward("disabled")).items()}


def disable(redis: Redis, keys: Keys, url: str, why: str) -> None:
    """Stop sending to ``url`` (410 Gone, or ``forwarding disable URL``) until ``enable``: from its next attempt."""
    redis.hset(keys.forward("disabled"), url, why)


def enable(redis: Redis, keys: Keys, url: str) -> bool:
    """Send to ``url`` again; return whether it was disabled."""
    return bool(redis.hdel(keys.forward("disabled"), url))


def record_attempt(redis: Redis, keys: Keys, mid: str, attempt: dict, status: str, *,
                   replace_last: bool = False) -> None:
    """Append one attempt (time, status code or error, latency), or replace the last one; set the message's status."""
    key = keys.forward("msg", mid)
    message = load(redis, keys, mid)
    if message is None:
        return
    kept = message["attempts"][:-1] if replace_last and message["attempts"] else message["attempts"]
    attempts = kept + [attempt]
    redis.hset(key, mapping={"attempts": json.dumps(attempts[-50:]), "status": status})


def redeliver(redis: Redis, keys: Keys, queue: Queue, mid: str) -> bool:
    """Send message ``mid`` again (even if delivered: the receiver deduplicates on its id); False if unknown.

    A message that failed for good has its own job put back (its successors,
    held back by ``depends_on``, follow once it succeeds); otherwise a new job.
    """
    if not redis.exists(keys.forward("msg", mid)):
        return False
    redis.hset(keys.forward("msg", mid), "status", "pending")
    from .. import dead_letters  # the failed registry: a requeued job keeps the batch's order

    if dead_letters.requeue(queue, mid):
        return True
    try:
        waiting = Job.fetch(mid, connection=redis).get_status() in ("deferred", "queued", "scheduled", "started")
    except NoSuchJobError:
        waiting = False
    if not waiting:  # a waiting job goes in its turn: a second one could overtake its predecessor
        enqueue_job(job_queues.of(queue, "forward"), mid, job_id=f"{mid}-r{uuid.uuid4().hex[:8]}", force=True)
    return True
