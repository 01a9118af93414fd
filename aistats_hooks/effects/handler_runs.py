"""What each handler did on a batch: one entry per handler job, for the dashboard and the CLI.

``{p}:hruns:{batch_id}`` is a hash of handler job id -> JSON ``{handler, transition,
status, attempt, at, ms, error}``, written by the handler job when a run ends
(``done`` or ``failed``, the latest attempt's), expiring with the event retention like
every other per-transition key. The change feed and RQ stay the truth of what is
due; this is only what happened, cheap to read per batch.
"""

from __future__ import annotations

import json
import time

from redis import Redis

from ..keys import Keys
from ..rules.timestamps import iso

ERROR_CHARS = 300


def record(redis: Redis, keys: Keys, batch_id: str, job_id: str, *, handler: str, transition: str, status: str,
           attempt: int, ms: float, retention: int, error: str | None = None) -> None:
    """Write the outcome of one handler run (``done`` or ``failed``) for ``batch_id``."""
    entry = {"handler": handler, "transition": transition, "status": status, "attempt": attempt,
             "at": iso(time.time()), "ms": round(ms), "error": (error or "")[:ERROR_CHARS] or None}
    pipe = redis.pipeline(transaction=False)
    pipe.hset(keys.handler_runs(batch_id), job_id, json.dumps(entry))
    pipe.expire(keys.handler_runs(batch_id), retention)
    pipe.execute()


def of_batch(redis: Redis, keys: Keys, batch_id: str) -> list[dict]:
    """The batch's handler runs, oldest first; an unreadable entry is left out."""
    runs = []
    for job_id, raw in redis.hgetall(keys.handler_runs(batch_id)).items():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entry["job_id"] = job_id.decode() if isinstance(job_id, bytes) else job_id
            runs.append(entry)
    return sorted(runs, key=lambda e: (str(e.get("at") or ""), str(e.get("job_id"))))
