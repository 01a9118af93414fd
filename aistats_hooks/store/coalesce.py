"""Queue coalescing: at most one waiting reconcile job per batch.

A batch's pending slot (``{p}:pending:{id}``) names the id of its waiting job. The
Lua function ``take_slot`` (shared by INGEST and REQUEST) takes the slot when no job
waits, and enters the batch in ``{p}:due``; the caller then enqueues that job through
RQ's public API (``queueing.enqueue``). A job frees the slot when it starts (BEGIN), so
an event arriving from then on queues exactly one follow-up. Only our keys are
written here.

``Requests`` queues a reconcile with no event (sweep, CLI, replay, follow-up).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis
from rq import Queue

from .. import queueing
from ..keys import Keys
from .script import Script, text

# Seconds a pending slot lives: longer than any wait in the queue we expect.
PENDING_TTL = 900

TAKE_SLOT_LUA = """
local PENDING_TTL = %d
-- Read take_slot()'s arguments from KEYS[k..k+2] and ARGV[a..a+3] (layout: coalesce.SlotArgs).
local function slot_args(k, a)
  return {
    pending = KEYS[k], recent = KEYS[k + 1], due = KEYS[k + 2],  -- the slot, debounce key, due set
    batch_id = ARGV[a], job_id = ARGV[a + 1], now_ms = tonumber(ARGV[a + 2]),
    debounce = ARGV[a + 3] == '1',            -- wait out a recent retrieve's window
    max_age = tonumber(ARGV[a + 4]),          -- seconds after which a waiting job is presumed lost (0 = never)
  }
end
-- Take the batch's slot for job_id unless a job already waits; return {'coalesced'} or
-- {'queued', job_id, wait_ms}: the caller enqueues job_id to run after wait_ms.
local function take_slot(q)
  local waiting = redis.call('GET', q.pending)
  if waiting and q.max_age > 0 and PENDING_TTL - redis.call('TTL', q.pending) >= q.max_age then
    -- Waiting longer than a sweep period: its worker may have died holding it, or the
    -- process that took it died before enqueueing; a second job is harmless, a stranded batch is not.
    waiting = nil
  end
  if waiting then return {'coalesced'} end
  redis.call('SET', q.pending, q.job_id, 'EX', PENDING_TTL)
  -- Debounce: the batch was retrieved moments ago (recent lives for the debounce window),
  -- so run the follow-up when the window ends, and let every event until then coalesce into it.
  local wait = 0
  if q.debounce then wait = math.max(redis.call('PTTL', q.recent), 0) end
  redis.call('ZADD', q.due, q.now_ms + wait, q.batch_id)
  return {'queued', q.job_id, wait}
end
""" % PENDING_TTL


@dataclass(frozen=True)
class SlotArgs:
    """The KEYS and ARGV of ``slot_args(k, a)``, in the order it reads them."""

    keys: Keys
    batch_id: str
    job_id: str
    now_ms: int
    debounce: bool = True
    max_age: int = 0

    def key_list(self) -> list:
        """KEYS[k..k+2]."""
        return [self.keys.pending(self.batch_id), self.keys.recent(self.batch_id), self.keys.due]

    def arg_list(self) -> list:
        """ARGV[a..a+4]."""
        return [self.batch_id, self.job_id, self.now_ms, int(self.debounce), self.max_age]


def follow_up(queue: Queue, batch_id: str, reply: list) -> str:
    """Enqueue the job a ``take_slot`` reply asks for; return the outcome ('queued' or 'coalesced')."""
    outcome = text(reply[0])
    if outcome == "queued":
        queueing.enqueue(queue, batch_id, text(reply[1]), int(reply[2]))
    return outcome


class RequestScript(Script):
    """REQUEST: take the slot of one batch with no event."""

    LUA = TAKE_SLOT_LUA + """
-- KEYS[1..3], ARGV[1..5]: take_slot()'s (coalesce.SlotArgs).
return take_slot(slot_args(1, 1))
"""


class Requests:
    """Reconcile requests that carry no event."""

    def __init__(self, redis: Redis, keys: Keys, queue: Queue, new_job_id) -> None:
        self.keys = keys
        self.queue = queue
        self.new_job_id = new_job_id
        self._request = RequestScript(redis)

    def request(self, batch_id: str, *, debounce: bool = True, max_pending_age: int = 0) -> str:
        """Queue a reconcile of ``batch_id`` unless one is waiting; return 'queued' or 'coalesced'.

        ``debounce=False`` (a person asked) skips the wait after a recent retrieve;
        ``max_pending_age`` (the sweep's) replaces a job waiting longer than that.
        """
        args = SlotArgs(self.keys, batch_id, self.new_job_id(), int(time.time() * 1000),
                        debounce=debounce, max_age=max_pending_age)
        return follow_up(self.queue, batch_id, self._request.run(args.key_list(), args.arg_list()))
