"""The Lua scripts that make each Redis step atomic, with their KEYS and ARGV.

Each script is one round trip and all-or-nothing: a delivery is either
recorded *and* queued, or not touched at all, so answering 2xx after the
script returned can never lose an event.
"""

from __future__ import annotations

# Shared tail of INGEST and REQUEST: queue one reconcile job for the batch
# unless one is already waiting (coalescing). It reads the waiting job's RQ
# hash by name (rq:job:{id}), one more reason these scripts need a single Redis.
# It expects locals `pending_key`, `job_key`, `queue_key`, `recent_key`,
# `scheduled_key`, `debounce`, `max_age`, `now_ms`, `job_id`, `pending_ttl` and `created_at`, `data`,
# `description` (the varying fields of the RQ job hash; the constant ones are
# baked in as JOB_CONSTANT).
_ENQUEUE = """
local JOB_CONSTANT = {%(job_constant)s}
local SCHEDULER_GRACE_MS = 5000
local function enqueue()
  -- The slot holds only while its job still waits (queued, or scheduled by the
  -- debounce below): a job that started frees the slot itself, so a slot naming
  -- a started, failed or vanished job was left by a worker killed mid-job.
  local waiting = redis.call('GET', pending_key)
  if waiting and max_age > 0 and tonumber(pending_ttl) - redis.call('TTL', pending_key) >= max_age then
    -- Waiting longer than a sweep period: its worker may have died holding it
    -- (RQ's intermediate queue); a second job is harmless, a stranded batch is not.
    waiting = nil
  end
  if waiting then
    local status = redis.call('HGET', 'rq:job:' .. waiting, 'status')
    if status == 'queued' then return 'coalesced' end
    if status == 'scheduled' then
      -- Only while RQ's scheduler is on time: a dead scheduler must not strand it.
      local due = redis.call('ZSCORE', scheduled_key, waiting)
      if due and tonumber(due) * 1000 + SCHEDULER_GRACE_MS > tonumber(now_ms) then return 'coalesced' end
      redis.call('ZREM', scheduled_key, waiting)
    end
  end
  redis.call('SET', pending_key, job_id, 'EX', pending_ttl)
  -- Debounce: the batch was retrieved moments ago (recent_key lives for the
  -- debounce window), so run the follow-up when the window ends, through RQ's
  -- scheduler, and let every event until then coalesce into it.
  local wait = 0
  if debounce then wait = redis.call('PTTL', recent_key) end
  if waiting then wait = 0 end  -- replacing a late job: run now
  local status = 'queued'
  if wait > 0 then status = 'scheduled' end
  redis.call('HSET', job_key, 'created_at', created_at, 'enqueued_at', created_at, 'data', data,
             'description', description, 'status', status, unpack(JOB_CONSTANT))
  if wait > 0 then
    redis.call('ZADD', scheduled_key, math.ceil((tonumber(now_ms) + wait) / 1000), job_id)
  else
    redis.call('RPUSH', queue_key, job_id)
  end
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
-- KEYS[9] debounce key        {p}:recent:{batch_id}
-- KEYS[10] RQ scheduled zset  rq:scheduled:{queue}
-- ARGV[1] event field, ARGV[2] packed event, ARGV[3] received at (ms), ARGV[4] retention (s),
-- ARGV[5] pending ttl (s), ARGV[6] job id, ARGV[7] 'batch' or 'ignore', ARGV[8] batch id,
-- ARGV[9] job created_at, ARGV[10] job data, ARGV[11] job description.
-- Returns 'duplicate', 'ignored', 'final', 'coalesced' or 'queued'.
local pending_key, job_key, queue_key = KEYS[4], KEYS[5], KEYS[6]
local recent_key, scheduled_key, now_ms, debounce, max_age = KEYS[9], KEYS[10], ARGV[3], true, 0
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
-- KEYS[4] debounce key    {p}:recent:{batch_id}
-- KEYS[5] RQ scheduled    rq:scheduled:{queue}
-- ARGV[1] pending ttl (s), ARGV[2] job id, ARGV[3] job created_at, ARGV[4] job data,
-- ARGV[5] job description, ARGV[6] now (ms), ARGV[7] '1' to debounce, '0' to run at once
-- (a person asked), ARGV[8] seconds after which a waiting job is presumed lost (0 = never).
-- Returns 'coalesced' or 'queued'.
local pending_key, job_key, queue_key = KEYS[1], KEYS[2], KEYS[3]
local recent_key, scheduled_key, now_ms, debounce = KEYS[4], KEYS[5], ARGV[6], ARGV[7] == '1'
local max_age = tonumber(ARGV[8])
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


BEGIN = """
-- A reconcile starts: free the batch's pending slot if this job holds it (so an
-- event arriving from now on queues exactly one follow-up), take the batch's
-- lock, and read what the reconcile needs, in one round trip.
-- KEYS[1] pending job key {p}:pending:{batch_id}
-- KEYS[2] lock key        {p}:lock:{batch_id}
-- KEYS[3] record hash     {p}:b:{batch_id}
-- KEYS[4] outcomes hash   {p}:eo:{batch_id}
-- KEYS[5] events hash     {p}:ev:{batch_id}
-- KEYS[6] debounce key    {p}:recent:{batch_id}
-- ARGV[1] job id ('' when run outside RQ), ARGV[2] lock token, ARGV[3] lock ttl (ms),
-- ARGV[4] debounce window (ms; 0 = none): follow-ups within it wait for its end.
-- Returns {0} when another worker holds the lock, else
-- {1, record doc or false, newest event field or false, its packed event or false}.
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return {0}
end
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[6], '1', 'PX', ARGV[4])
end
local newest, newest_at = false, -1
local flat = redis.call('HGETALL', KEYS[4])
for i = 1, #flat, 2 do
  local sep = string.find(flat[i + 1], ':', 1, true)
  if sep and not string.find(flat[i], '#', 1, true) then
    local at = tonumber(string.sub(flat[i + 1], sep + 1)) or 0
    if at > newest_at then newest, newest_at = flat[i], at end
  end
end
local blob = false
if newest then blob = redis.call('HGET', KEYS[5], newest) end
return {1, redis.call('HGET', KEYS[3], 'doc'), newest, blob}
"""

UNLOCK = """
-- Release a batch's lock if this token still holds it.
-- KEYS[1] lock key; ARGV[1] lock token. Returns 1 if released.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

COMMIT = """
-- Write a reconciled record with its indexes and ledger contribution, settle
-- the outcome of the events it accounts for, count the upstream call, and
-- release the lock: all or nothing, in one round trip.
-- KEYS[1] record hash {p}:b:{id}; KEYS[2] outcomes hash {p}:eo:{id}; KEYS[3] lock {p}:lock:{id};
-- KEYS[4] ledger contributions {p}:ledger:contrib; KEYS[5] open zset {p}:open;
-- KEYS[6] upstream counters {p}:m:upstream
-- ARGV[1] key prefix, ARGV[2] batch id,
-- ARGV[3] packed doc ('' writes no record: only events, counters, lock), ARGV[4] status,
-- ARGV[5] final '1'/'0', ARGV[6] session id, ARGV[7] model ('' = none), ARGV[8] created (ms),
-- ARGV[9] open score ('' = not open), ARGV[10..14] ledger nanos, day, session, model, provider,
-- ARGV[15] events received until (ms), ARGV[16] their outcome ('' = leave events),
-- ARGV[17] lock token ('' = no lock), ARGV[18] upstream status to count ('' = none).
-- The ledger keeps each batch's contribution ("nanos|day|session|model|provider")
-- and adds only the difference, so no batch is ever counted twice. Index and
-- group keys are derived from ARGV[1]: a single (non-cluster) Redis.
local p, id = ARGV[1], ARGV[2]
local function split(value)
  local out, start = {}, 1
  while true do
    local i = string.find(value, '|', start, true)
    if not i then out[#out + 1] = string.sub(value, start); return out end
    out[#out + 1] = string.sub(value, start, i - 1)
    start = i + 1
  end
end
local function ledger(value, sign)
  local f = split(value)
  -- Nanos stay strings: Lua numbers are doubles and print large values as 1e+15.
  if f[1] == '0' then return end
  local nanos = f[1]
  if sign < 0 then nanos = '-' .. nanos end
  local day = f[2]
  redis.call('INCRBY', p .. ':ledger:total', nanos)
  redis.call('HINCRBY', p .. ':ledger:day', day, nanos)
  local dims = {session_id = f[3], model = f[4], provider = f[5]}
  for dim, group in pairs(dims) do
    redis.call('HINCRBY', p .. ':ledger:' .. dim, group, nanos)
    redis.call('HINCRBY', p .. ':ledger:' .. dim .. ':' .. day, group, nanos)
  end
end
local function reindex(name, old, new, score)
  if old and old ~= new then redis.call('ZREM', p .. ':idx:' .. name .. ':' .. old, id) end
  if new ~= '' then redis.call('ZADD', p .. ':idx:' .. name .. ':' .. new, score, id) end
end
if ARGV[3] ~= '' then
  local old = redis.call('HMGET', KEYS[1], 'status', 'session', 'model')
  redis.call('HSET', KEYS[1], 'doc', ARGV[3], 'status', ARGV[4], 'final', ARGV[5],
             'session', ARGV[6], 'model', ARGV[7])
  redis.call('ZADD', p .. ':idx:all', ARGV[8], id)
  reindex('status', old[1], ARGV[4], ARGV[8])
  reindex('session', old[2], ARGV[6], ARGV[8])
  reindex('model', old[3], ARGV[7], ARGV[8])
  if ARGV[9] == '' then redis.call('ZREM', KEYS[5], id) else redis.call('ZADD', KEYS[5], ARGV[9], id) end
  local new = table.concat({ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14]}, '|')
  local before = redis.call('HGET', KEYS[4], id)
  if before ~= new then
    if before then ledger(before, -1) end
    ledger(new, 1)
    redis.call('HSET', KEYS[4], id, new)
  end
end
if ARGV[16] ~= '' then
  -- Only events still waiting ('queued', 'coalesced') and received by then:
  -- one that arrived during the run is left for the follow-up run.
  local flat = redis.call('HGETALL', KEYS[2])
  for i = 1, #flat, 2 do
    local sep = string.find(flat[i + 1], ':', 1, true)
    if sep then
      local outcome, at = string.sub(flat[i + 1], 1, sep - 1), string.sub(flat[i + 1], sep + 1)
      if (outcome == 'queued' or outcome == 'coalesced') and tonumber(at) <= tonumber(ARGV[15]) then
        redis.call('HSET', KEYS[2], flat[i], ARGV[16] .. ':' .. at)
      end
    end
  end
end
if ARGV[18] ~= '' then
  redis.call('HINCRBY', KEYS[6], 'retrieve', 1)
  redis.call('HINCRBY', KEYS[6], ARGV[18], 1)
end
if ARGV[17] ~= '' and redis.call('GET', KEYS[3]) == ARGV[17] then
  redis.call('DEL', KEYS[3])
end
return 1
"""
