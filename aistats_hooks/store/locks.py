"""A reconcile's start: the batch's lock, its pending slot, and what the run reads.

A reconcile is two round trips: ``Locks.begin`` (free the slot, take the lock,
read the record and the newest event) and ``commit.Commit`` (write everything,
release the lock). ``Locks.unlock`` releases a lock with nothing to write.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from redis import Redis

from . import compression, delivery_codec
from ..keys import Keys
from .script import Script, text

LOCK_MARGIN_S = 10


@dataclass(frozen=True)
class Begun:
    """What a reconcile starts from: the record and the newest stored event."""

    record: dict | None
    newest_event: dict | None
    # A run took this job's batch ahead of it (workers/drain.py), and whether a delivery is unsettled
    # now: a job whose batch ran ahead with nothing new since has nothing left to do.
    ran_ahead: bool = False
    unsettled: bool = True


class BeginScript(Script):
    """BEGIN: free the job's pending slot, take the lock, read the record and newest event."""

    LUA = """
-- A reconcile starts: free the batch's pending slot if this job holds it (so an
-- event arriving from now on queues exactly one follow-up), take the batch's
-- lock, and read what the reconcile needs, in one round trip.
-- KEYS[1] pending job key {p}:pending:{batch_id}
-- KEYS[2] lock key        {p}:lock:{batch_id}
-- KEYS[3] record hash     {p}:b:{batch_id}
-- KEYS[4] outcomes hash   {p}:eo:{batch_id}
-- KEYS[5] events hash     {p}:ev:{batch_id}
-- KEYS[6] debounce key    {p}:recent:{batch_id}
-- KEYS[7] due set         {p}:due
-- KEYS[8] ran-ahead mark  {p}:ahead:{job_id} (set by a run that took this job's batch ahead)
-- ARGV[1] job id ('' when run outside RQ), ARGV[2] lock token, ARGV[3] lock ttl (ms),
-- ARGV[4] debounce window (ms; 0 = none): follow-ups within it wait for its end, ARGV[5] batch id.
-- Returns {0} when another worker holds the lock, else
-- {1, record doc or false, newest event field or false, its packed event or false,
--  1 if the batch ran ahead of this job, 1 if a delivery is unsettled}.
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[7], ARGV[5])
end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return {0}
end
local ahead = 0
if ARGV[1] ~= '' then ahead = redis.call('DEL', KEYS[8]) end
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[6], '1', 'PX', ARGV[4])
end
local newest, newest_at, unsettled = false, -1, 0
local flat = redis.call('HGETALL', KEYS[4])
for i = 1, #flat, 2 do
  local sep = string.find(flat[i + 1], ':', 1, true)
  if sep and string.byte(flat[i], 1) ~= 35 then  -- 35 = '#': bookkeeping, not an event
    local at = tonumber(string.sub(flat[i + 1], sep + 1)) or 0
    if at > newest_at then newest, newest_at = flat[i], at end
    local outcome = string.sub(flat[i + 1], 1, sep - 1)
    if outcome == 'queued' or outcome == 'coalesced' then unsettled = 1 end
  end
end
local blob = false
if newest then blob = redis.call('HGET', KEYS[5], newest) end
return {1, redis.call('HGET', KEYS[3], 'doc'), newest, blob, ahead, unsettled}
"""

    def call(self, keys: Keys, batch_id: str, *, job_id: str, token: str, lock_ttl_ms: int,
             debounce_ms: int) -> list:
        """Run BEGIN once; return its raw reply."""
        return self.run(
            [keys.pending(batch_id), keys.lock(batch_id), keys.record(batch_id), keys.outcomes(batch_id),
             keys.events(batch_id), keys.recent(batch_id), keys.due, keys.ahead(job_id)],
            [job_id, token, lock_ttl_ms, debounce_ms, batch_id],
        )


class UnlockScript(Script):
    """UNLOCK: release a batch's lock if this token still holds it."""

    LUA = """
-- KEYS[1] lock key {p}:lock:{batch_id}; ARGV[1] lock token. Returns 1 if released.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

    def call(self, keys: Keys, batch_id: str, *, token: str) -> int:
        """Run UNLOCK."""
        return self.run([keys.lock(batch_id)], [token])


class Locks:
    """Begin and abandon reconcile runs."""

    def __init__(self, redis: Redis, keys: Keys, *, upstream_timeout: float, debounce_ms: int) -> None:
        self.keys = keys
        self.debounce_ms = debounce_ms
        # A run holds the lock for one retrieve (connect + read timeouts) and a
        # few writes; a worker killed mid-run strands the batch no longer than this.
        self.lock_ttl_ms = int((2 * upstream_timeout + LOCK_MARGIN_S) * 1000)
        self._begin = BeginScript(redis)
        self._unlock = UnlockScript(redis)

    def begin(self, batch_id: str, job_id: str, token: str, *, retrieving: bool = True,
              wait: float = 0.0) -> Begun | None:
        """Free the job's pending slot, take the batch's lock, read record and newest event.

        ``retrieving`` starts the debounce window (a retrieve follows); ``wait``
        is how long to wait for another worker's run to end. Returns None when
        the lock is still held then.
        """
        deadline = time.monotonic() + wait
        pause = 0.01
        while (begun := self._try_begin(batch_id, job_id, token, retrieving)) is None:
            if time.monotonic() >= deadline:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.25)
        return begun

    def _try_begin(self, batch_id: str, job_id: str, token: str, retrieving: bool) -> Begun | None:
        reply = self._begin.call(self.keys, batch_id, job_id=job_id, token=token, lock_ttl_ms=self.lock_ttl_ms,
                                 debounce_ms=self.debounce_ms if retrieving else 0)
        if not reply[0]:
            return None
        doc, field, blob = reply[1], reply[2], reply[3]
        newest = delivery_codec.decode(batch_id, text(field), blob, {}) if field and blob else None
        return Begun(json.loads(compression.unpack(doc)) if doc else None, newest,
                     ran_ahead=bool(reply[4]), unsettled=bool(reply[5]))

    def unlock(self, batch_id: str, token: str) -> None:
        """Release the batch's lock if ``token`` still holds it."""
        self._unlock.call(self.keys, batch_id, token=token)
