"""The Lua scripts that make each Redis step atomic, with their KEYS and ARGV.

Each script is one round trip and all-or-nothing: a delivery is either
recorded *and* queued, or not touched at all, so answering 2xx after the
script returned can never lose an event.
"""

from __future__ import annotations

# Shared tail of INGEST and REQUEST: queue one reconcile job for the batch
# unless one is already waiting (coalescing). It reads the waiting job's RQ
# hash by name (rq:job:{id}), one more reason these scripts need a single Redis.
# It expects locals `pending_key`, `job_key`, `queue_key`, `job_id`,
# `pending_ttl` and `created_at`, `data`, `description` (the varying fields of
# the RQ job hash; the constant ones are baked in as JOB_CONSTANT).
_ENQUEUE = """
local JOB_CONSTANT = {%(job_constant)s}
local function enqueue()
  -- The slot holds only while its job still waits in the queue: a job that
  -- started releases the slot itself, so a slot naming a started, failed or
  -- vanished job was left by a worker killed mid-job, and is taken over.
  local waiting = redis.call('GET', pending_key)
  if waiting and redis.call('HGET', 'rq:job:' .. waiting, 'status') == 'queued' then
    return 'coalesced'
  end
  redis.call('SET', pending_key, job_id, 'EX', pending_ttl)
  redis.call('HSET', job_key, 'created_at', created_at, 'enqueued_at', created_at, 'data', data,
             'description', description, 'status', 'queued', unpack(JOB_CONSTANT))
  redis.call('RPUSH', queue_key, job_id)
  return 'queued'
end
"""

_INGEST = (
    """
-- Record a verified delivery, deduplicated on its event id, and queue its batch.
-- KEYS[1] batch events hash   {p}:ev:{batch_id}  (event field -> packed headers+body)
-- KEYS[2] batch outcomes hash {p}:eo:{batch_id}  (event field -> "outcome:received_ms")
-- KEYS[3] batch record hash   {p}:b:{batch_id}
-- KEYS[4] pending job key     {p}:pending:{batch_id}
-- KEYS[5] RQ job hash         rq:job:{job_id}
-- KEYS[6] RQ queue list       rq:queue:{queue}
-- KEYS[7] delivery counters   {p}:m:deliveries
-- KEYS[8] open batches zset   {p}:open (so the sweep finds the batch even if its job dies)
-- ARGV[1] event field, ARGV[2] packed event, ARGV[3] received at (ms), ARGV[4] retention (s),
-- ARGV[5] pending ttl (s), ARGV[6] job id, ARGV[7] 'batch' or 'ignore', ARGV[8] batch id,
-- ARGV[9] job created_at, ARGV[10] job data, ARGV[11] job description.
-- Returns 'duplicate', 'ignored', 'final', 'coalesced' or 'queued'.
local pending_key, job_key, queue_key = KEYS[4], KEYS[5], KEYS[6]
local job_id, pending_ttl = ARGV[6], ARGV[5]
local created_at, data, description = ARGV[9], ARGV[10], ARGV[11]
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[1] .. '#d', 1)
  redis.call('HINCRBY', KEYS[7], 'duplicate', 1)
  return 'duplicate'
end
"""
    + _ENQUEUE
    + """
local outcome
if ARGV[7] == 'ignore' then
  outcome = 'ignored'
elseif redis.call('HGET', KEYS[3], 'final') == '1' then
  outcome = 'final'
else
  outcome = enqueue()
  -- NX: a known open batch keeps its last-reconciled score.
  redis.call('ZADD', KEYS[8], 'NX', math.floor(tonumber(ARGV[3]) / 1000), ARGV[8])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], outcome .. ':' .. ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('HINCRBY', KEYS[7], outcome, 1)
return outcome
"""
)

_REQUEST = (
    """
-- Queue a reconcile of one batch with no event (sweep, CLI, replay, follow-up).
-- KEYS[1] pending job key {p}:pending:{batch_id}
-- KEYS[2] RQ job hash     rq:job:{job_id}
-- KEYS[3] RQ queue list   rq:queue:{queue}
-- ARGV[1] pending ttl (s), ARGV[2] job id, ARGV[3] job created_at, ARGV[4] job data,
-- ARGV[5] job description. Returns 'coalesced' or 'queued'.
local pending_key, job_key, queue_key = KEYS[1], KEYS[2], KEYS[3]
local pending_ttl, job_id = ARGV[1], ARGV[2]
local created_at, data, description = ARGV[3], ARGV[4], ARGV[5]
"""
    + _ENQUEUE
    + """
return enqueue()
"""
)


def ingest(job_constant: str) -> str:
    """Return the INGEST script with the constant RQ job fields baked in."""
    return _INGEST.replace("%(job_constant)s", job_constant)


def request(job_constant: str) -> str:
    """Return the REQUEST script with the constant RQ job fields baked in."""
    return _REQUEST.replace("%(job_constant)s", job_constant)


RELEASE_PENDING = """
-- A job starts: free the batch's pending slot if it is ours, so that an event
-- arriving from now on queues exactly one follow-up run.
-- KEYS[1] pending job key; ARGV[1] the starting job's id. Returns 1 if freed.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

LEDGER = """
-- Set one batch's contribution to the billing ledger, adding only the difference.
-- KEYS[1] contributions hash {p}:ledger:contrib (batch id -> "nanos|day|session|model|provider")
-- ARGV[1] key prefix, ARGV[2] batch id, ARGV[3] nanos, ARGV[4] day,
-- ARGV[5] session id, ARGV[6] model, ARGV[7] provider.
-- Group hashes are derived from ARGV[1] ({p}:ledger:{dim} and {p}:ledger:{dim}:{day}),
-- so this script needs a single (non-cluster) Redis.
-- Returns {old contribution or '', new contribution}, or 0 when nothing changed.
local p, batch = ARGV[1], ARGV[2]
local new = table.concat({ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]}, '|')
local old = redis.call('HGET', KEYS[1], batch)
if old == new then return 0 end
local function split(value)
  local out, start = {}, 1
  while true do
    local i = string.find(value, '|', start, true)
    if not i then out[#out + 1] = string.sub(value, start); return out end
    out[#out + 1] = string.sub(value, start, i - 1)
    start = i + 1
  end
end
local function apply(value, sign)
  local f = split(value)
  -- Nanos stay strings: Lua numbers are doubles and print large values as 1e+15.
  if f[1] == '0' then return end
  local nanos = f[1]
  if sign < 0 then nanos = '-' .. nanos end
  local day = f[2]
  redis.call('INCRBY', p .. ':ledger:total', nanos)
  redis.call('HINCRBY', p .. ':ledger:day', day, nanos)
  local dims = {session_id = f[3], model = f[4], provider = f[5]}
  for dim, value in pairs(dims) do
    redis.call('HINCRBY', p .. ':ledger:' .. dim, value, nanos)
    redis.call('HINCRBY', p .. ':ledger:' .. dim .. ':' .. day, value, nanos)
  end
end
if old then apply(old, -1) end
apply(new, 1)
redis.call('HSET', KEYS[1], batch, new)
return {old or '', new}
"""

MARK_EVENTS = """
-- Settle the outcome of a batch's events still waiting on a reconcile.
-- KEYS[1] batch outcomes hash {p}:eo:{batch_id}
-- ARGV[1] received-until (ms), ARGV[2] outcome.
-- Only events marked 'queued' or 'coalesced' and received by ARGV[1] change:
-- one that arrived during the run is left for the follow-up run.
local flat = redis.call('HGETALL', KEYS[1])
local changed = 0
for i = 1, #flat, 2 do
  local field, value = flat[i], flat[i + 1]
  local sep = string.find(value, ':', 1, true)
  if sep then
    local outcome, at = string.sub(value, 1, sep - 1), string.sub(value, sep + 1)
    if (outcome == 'queued' or outcome == 'coalesced') and tonumber(at) <= tonumber(ARGV[1]) then
      redis.call('HSET', KEYS[1], field, ARGV[2] .. ':' .. at)
      changed = changed + 1
    end
  end
end
return changed
"""
