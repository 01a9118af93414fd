"""Queue coalescing: at most one waiting reconcile job per batch, enqueued as RQ would.

``enqueue_lua(rq)`` is the Lua function INGEST and REQUEST share; ``EnqueueArgs``
builds its KEYS and ARGV (always the last of the including script's, since
the job's fields vary in number). ``Requests`` queues a reconcile with no
event (sweep, CLI, replay, follow-up) through the REQUEST script.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis

from ..keys import Keys
from ..queueing import NewJob, RQContract
from .script import Script, lua_string, text

# Seconds a pending slot lives: longer than any wait in the queue we expect.
PENDING_TTL = 900

_ENQUEUE_LUA = """
local SCHEDULER_GRACE_MS = 5000
-- Read enqueue()'s arguments from KEYS[k..k+5] and ARGV[a..] (layout: coalesce.EnqueueArgs).
local function enqueue_args(k, a)
  local fields = {unpack(RQ.constant)}        -- the fields every reconcile job shares
  for i = a + 5, #ARGV do fields[#fields + 1] = ARGV[i] end
  return {
    pending = KEYS[k], recent = KEYS[k + 1],  -- the batch's slot ({p}:pending:{id}) and debounce key
    job = KEYS[k + 2], queue = KEYS[k + 3],   -- RQ's job hash and queue list
    queues = KEYS[k + 4], scheduled = KEYS[k + 5],  -- RQ's set of queues (rq:queues), scheduled registry
    job_id = ARGV[a], now_ms = tonumber(ARGV[a + 1]),
    debounce = ARGV[a + 2] == '1',            -- wait out a recent retrieve's window
    max_age = tonumber(ARGV[a + 3]),          -- seconds after which a waiting job is presumed lost (0 = never)
    enqueued_at = ARGV[a + 4],                -- RQ writes it when it queues, not when it schedules
    fields = fields,                          -- the job hash, as RQ's Job.to_dict() has it
    pending_ttl = RQ.pending_ttl, job_prefix = RQ.job_prefix,
    queued = RQ.queued, scheduled_status = RQ.scheduled,
  }
end
-- Queue one reconcile job for the batch unless one is already waiting; return
-- 'queued' or 'coalesced'. Writes what Queue.enqueue_job (or, debounced,
-- Queue.schedule_job) writes: the job hash, the queue (or scheduled registry)
-- entry and the queue's membership in rq:queues.
local function enqueue(q)
  -- The slot holds only while its job still waits (queued, or scheduled by the
  -- debounce below): a job that started frees the slot itself, so a slot naming
  -- a started, failed or vanished job was left by a worker killed mid-job.
  local waiting = redis.call('GET', q.pending)
  if waiting and q.max_age > 0 and q.pending_ttl - redis.call('TTL', q.pending) >= q.max_age then
    -- Waiting longer than a sweep period: its worker may have died holding it
    -- (RQ's intermediate queue); a second job is harmless, a stranded batch is not.
    waiting = nil
  end
  if waiting then
    local status = redis.call('HGET', q.job_prefix .. waiting, 'status')
    if status == q.queued then return 'coalesced' end
    if status == q.scheduled_status then
      -- Only while RQ's scheduler is on time: a dead scheduler must not strand it.
      -- Registry scores are unix seconds (ScheduledJobRegistry.schedule).
      local due = redis.call('ZSCORE', q.scheduled, waiting)
      if due and tonumber(due) * 1000 + SCHEDULER_GRACE_MS > q.now_ms then return 'coalesced' end
      redis.call('ZREM', q.scheduled, waiting)
    end
  end
  redis.call('SET', q.pending, q.job_id, 'EX', q.pending_ttl)
  -- Debounce: the batch was retrieved moments ago (recent lives for the
  -- debounce window), so run the follow-up when the window ends, through RQ's
  -- scheduler, and let every event until then coalesce into it.
  local wait = 0
  if q.debounce then wait = redis.call('PTTL', q.recent) end
  if waiting then wait = 0 end  -- replacing a late job: run now
  redis.call('SADD', q.queues, q.queue)
  local fields = q.fields
  if wait > 0 then
    fields[#fields + 1] = 'status'; fields[#fields + 1] = q.scheduled_status
    redis.call('HSET', q.job, unpack(fields))
    redis.call('ZADD', q.scheduled, math.ceil((q.now_ms + wait) / 1000), q.job_id)
  else
    fields[#fields + 1] = 'status'; fields[#fields + 1] = q.queued
    fields[#fields + 1] = 'enqueued_at'; fields[#fields + 1] = q.enqueued_at
    redis.call('HSET', q.job, unpack(fields))
    redis.call('RPUSH', q.queue, q.job_id)
  end
  return 'queued'
end
"""


def enqueue_lua(rq: RQContract) -> str:
    """Return the shared enqueue function, with RQ's names and constant job fields read at start.

    They come from RQ's own classes (``RQContract``) when the store starts, are
    the same for every call, and so are baked into the script rather than sent
    with each acknowledgement; ``tests/test_queueing.py`` diffs the result
    against RQ's own enqueue.
    """
    constant = ", ".join(lua_string(str(x)) for x in rq.constant)
    return (
        f"local RQ = {{job_prefix = {lua_string(rq.job_key_prefix)}, queued = {lua_string(rq.queued)}, "
        f"scheduled = {lua_string(rq.scheduled)}, pending_ttl = {PENDING_TTL},\n"
        f"            constant = {{{constant}}}}}\n" + _ENQUEUE_LUA
    )


@dataclass(frozen=True)
class EnqueueArgs:
    """The KEYS and ARGV of ``enqueue_args(k, a)``, in the order it reads them."""

    rq: RQContract
    keys: Keys
    batch_id: str
    job: NewJob
    now_ms: int
    debounce: bool = True
    max_age: int = 0

    def key_list(self) -> list:
        """KEYS[k..k+5]."""
        return [self.keys.pending(self.batch_id), self.keys.recent(self.batch_id), self.job.key,
                self.rq.queue_key, self.rq.queues_key, self.rq.scheduled_key]

    def arg_list(self) -> list:
        """ARGV[a..] (the job's varying fields last)."""
        return [self.job.id, self.now_ms, int(self.debounce), self.max_age, self.job.enqueued_at, *self.job.fields]


class RequestScript(Script):
    """REQUEST: queue a reconcile of one batch with no event."""

    LUA = """
-- KEYS[1..6], ARGV[1..]: enqueue()'s (coalesce.EnqueueArgs). Returns 'coalesced' or 'queued'.
return enqueue(enqueue_args(1, 1))
"""

    def __init__(self, redis: Redis, rq: RQContract) -> None:
        super().__init__(redis, enqueue_lua(rq) + self.LUA)

    def call(self, enqueue: EnqueueArgs) -> str:
        """Run REQUEST for ``enqueue``."""
        return text(self.run(enqueue.key_list(), enqueue.arg_list()))


class Requests:
    """Reconcile requests that carry no event."""

    def __init__(self, redis: Redis, keys: Keys, rq: RQContract, new_job_id) -> None:
        self.keys = keys
        self.rq = rq
        self.new_job_id = new_job_id
        self._request = RequestScript(redis, rq)

    def request(self, batch_id: str, *, debounce: bool = True, max_pending_age: int = 0) -> str:
        """Queue a reconcile of ``batch_id`` unless one is waiting; return 'queued' or 'coalesced'.

        ``debounce=False`` (a person asked) skips the wait after a recent retrieve;
        ``max_pending_age`` (the sweep's) replaces a job waiting longer than that.
        """
        job = self.rq.new_job(batch_id, self.new_job_id())
        return self._request.call(EnqueueArgs(self.rq, self.keys, batch_id, job, int(time.time() * 1000),
                                              debounce=debounce, max_age=max_pending_age))
