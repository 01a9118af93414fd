"""When to archive, and what the service knows of each batch's archive (``archive.py`` writes the files).

A consumer group (``archive``) on the change feed ``{p}:changes`` sees every
transition once; a terminal one (completed, failed, cancelled, expired)
enqueues ``workers.archive_jobs.archive_batch(batch_id)`` on the archive
queue (``<queue>-archive``), under the job id ``<prefix>-a-<batch_id>``, so a
batch has at most one archive job at a time, whoever asks (the feed, or
``archive BATCH_ID`` / ``archive --missing`` in the CLI). RQ retries a
failing job with backoff; one that fails every try is a dead letter like any
other job.

The state of each batch's archive is one JSON value, ``{p}:arch:<batch_id>``:
``{url, status, files, error, at}``, with status ``queued``, ``archiving``,
``archived`` or ``failed``; ``GET /batches/<id>`` shows it as ``archive``.
Counts and bytes are in the counter hash ``{p}:m:archive``.
"""

from __future__ import annotations

import json
import logging
import time

from redis import Redis
from redis.exceptions import ResponseError
from rq import Queue, Retry
from rq.job import Job

from .. import job_queues, tracing
from ..config import Settings
from ..keys import Keys
from ..store.process_lock import hold

log = logging.getLogger("aistats_hooks.effects.archiving")
GROUP = "archive"
CONSUMER = "archiver"
ARCHIVE_FUNC = "workers.archive_jobs.archive_batch"
TERMINAL = frozenset({"batch.completed", "batch.failed", "batch.cancelled", "batch.expired"})
ENDED_STATUSES = ("completed", "failed", "cancelled", "expired")
LOCK_MS = 30_000
# Backoff of a failing archive: the store or the gateway may be away for a while; 8 tries over about a day.
BACKOFF = [30, 120, 600, 1800, 3600, 3600 * 3, 3600 * 6, 3600 * 12]
JOB_TIMEOUT = 3600  # a large file over a slow link
FAILURE_TTL = 7 * 86400


def queue_name(settings: Settings) -> str:
    return job_queues.name(settings.queue_name, "archive")


def state_key(keys: Keys, batch_id: str) -> str:
    return f"{keys.prefix}:arch:{batch_id}"


def counters_key(keys: Keys) -> str:
    return keys.counters("archive")


def job_id(keys: Keys, batch_id: str) -> str:
    return f"{keys.prefix.replace(':', '_')}-a-{batch_id}"


def ensure_group(redis: Redis, keys: Keys) -> None:
    """Create the archiver's consumer group at the feed's end: batches that end from now on are archived."""
    try:
        redis.xgroup_create(keys.changes, GROUP, id="$", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def read_state(redis: Redis, keys: Keys, batch_id: str) -> dict | None:
    raw = redis.get(state_key(keys, batch_id))
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def write_state(redis: Redis, keys: Keys, settings: Settings, batch_id: str, **state) -> None:
    state.setdefault("at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    redis.set(state_key(keys, batch_id), json.dumps(state, separators=(",", ":"), default=str),
              ex=max(settings.event_retention, 7 * 86400))


def enqueue(redis: Redis, keys: Keys, settings: Settings, batch_id: str) -> bool:
    """Queue the batch's archive job unless one is waiting or running; return whether one was queued."""
    jid = job_id(keys, batch_id)
    existing = Job.fetch(jid, connection=redis) if Job.exists(jid, connection=redis) else None
    if existing is not None and existing.get_status(refresh=False) in ("queued", "started", "scheduled", "deferred"):
        return False
    if existing is not None:
        existing.delete()  # finished or failed before: this is a new try (a re-run verifies, rewrites nothing whole)
    Queue(queue_name(settings), connection=redis).enqueue(
        ARCHIVE_FUNC, args=(batch_id,), job_id=jid, job_timeout=JOB_TIMEOUT, result_ttl=86400,
        failure_ttl=FAILURE_TTL, retry=Retry(max=len(BACKOFF), interval=BACKOFF),
        description=f"archive {batch_id}", meta=tracing.job_meta(),
    )
    state = read_state(redis, keys, batch_id) or {}
    write_state(redis, keys, settings, batch_id, **{**state, "status": state.get("status") or "queued"})
    return True


def dispatch(redis: Redis, keys: Keys, settings: Settings, *, limit: int = 500) -> int:
    """Enqueue an archive job for every batch that ended since the last call; return how many."""
    if not settings.archive_url:
        return 0
    queued = 0
    with hold(redis, f"{keys.prefix}:arch:lock", LOCK_MS) as held:
        if not held:
            return 0
        ensure_group(redis, keys)
        for start in ("0", ">"):
            while True:
                reply = redis.xreadgroup(GROUP, CONSUMER, {keys.changes: start}, count=limit) or []
                items = [item for _stream, batch in reply for item in batch]
                for raw_id, fields in items:
                    text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                            for k, v in fields.items()}
                    if text.get("transition") in TERMINAL and text.get("batch_id"):
                        queued += enqueue(redis, keys, settings, text["batch_id"])
                    redis.xack(keys.changes, GROUP, raw_id)
                if start == "0" or len(items) < limit:
                    break
    return queued


def ended_batches(redis: Redis, keys: Keys):
    """Every batch id whose record is in an ended status (read from the status indexes)."""
    for status in ENDED_STATUSES:
        for raw in redis.zscan_iter(keys.index("status", status), count=1000):
            member = raw[0]
            yield member.decode() if isinstance(member, bytes) else member


def missing(redis: Redis, keys: Keys) -> list[str]:
    """Ended batches with no archived state (queue them with ``enqueue``)."""
    out = []
    for batch_id in ended_batches(redis, keys):
        state = read_state(redis, keys, batch_id)
        if not state or state.get("status") not in ("archived", "nothing"):
            out.append(batch_id)
    return out
