"""The open-batch set the sweep reads (INGEST adds to it, COMMIT scores or removes), its allowance, pruning unknown batches.

The sweep is the backstop behind discovery (discovery.py): at 100,000 open
batches, re-reconciling each one every AISTATS_STALE_AFTER would be 100,000
retrieves a pass, so ALLOWANCE caps it at AISTATS_SWEEP_MAX_PER_HOUR (a token
bucket on Redis's clock, shared by every cron), oldest first.

A batch the gateway does not know (``not_found``: a typo, a test trigger, a
forged id) is listed in ``{p}:unknown`` by COMMIT; after
AISTATS_UNKNOWN_RETENTION the sweep deletes its record, events and every
index entry in one step (PRUNE), so no index keeps an id whose record is gone.
"""

from __future__ import annotations

from redis import Redis

from ..keys import Keys
from .script import Script, text


class PruneScript(Script):
    """PRUNE: delete batches marked not_found before a time, with their events and index entries."""

    LUA = """
-- KEYS[1] unknown zset {p}:unknown; KEYS[2] ledger contributions {p}:ledger:contrib; KEYS[3] open zset {p}:open
-- ARGV[1] key prefix, ARGV[2] marked before (unix seconds), ARGV[3] at most this many.
-- Index keys are derived from the prefix with the shapes keys.py names (as COMMIT does).
-- Returns how many batches were deleted.
local p = ARGV[1]
local pruned = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))) do
  local record = p .. ':b:' .. id
  local f = redis.call('HMGET', record, 'status', 'session', 'model')
  local contrib = redis.call('HGET', KEYS[2], id)
  if redis.call('EXISTS', p .. ':lock:' .. id) == 1 then
    -- a run is reconciling it: look again next sweep
  elseif (f[1] and f[1] ~= 'not_found') or (contrib and string.sub(contrib, 1, 2) ~= '0|') then
    -- Known again, or carrying money (never dropped silently): no longer unknown.
    redis.call('ZREM', KEYS[1], id)
  else
    redis.call('DEL', record, p .. ':ev:' .. id, p .. ':eo:' .. id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    redis.call('ZREM', p .. ':idx:all', id)
    redis.call('ZREM', p .. ':idx:status:not_found', id)
    if f[2] and f[2] ~= '' then redis.call('ZREM', p .. ':idx:session:' .. f[2], id) end
    if f[3] and f[3] ~= '' then redis.call('ZREM', p .. ':idx:model:' .. f[3], id) end
    redis.call('ZREM', KEYS[1], id)
    pruned = pruned + 1
  end
end
return pruned
"""

    def call(self, keys: Keys, *, before: float, limit: int) -> int:
        """Run PRUNE."""
        return int(self.run([keys.unknown, keys.ledger_contributions, keys.open], [keys.prefix, int(before), limit]))


class AllowanceScript(Script):
    """ALLOWANCE: take up to N of the sweep's tokens; they refill at a rate an hour, up to five minutes' worth."""

    LUA = """
-- KEYS[1] the allowance hash {p}:sweep:allowance (tokens, at)
-- ARGV[1] tokens an hour, ARGV[2] most wanted now. Returns how many are granted.
local rate = tonumber(ARGV[1]) / 3600
local burst = math.max(1, tonumber(ARGV[1]) / 12)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local h = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(h[1]) or burst
local at = tonumber(h[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local grant = math.max(0, math.min(tonumber(ARGV[2]), math.floor(tokens)))
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - grant), 'at', tostring(now))
return grant
"""

    def call(self, keys: Keys, *, per_hour: int, wanted: int) -> int:
        """Run ALLOWANCE."""
        return int(self.run([keys.sweep_allowance], [per_hour, wanted]))


class OpenBatches:
    """Batches not final, by last reconcile time; unknown batches past their retention."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._prune = PruneScript(redis)
        self._allowance = AllowanceScript(redis)

    def due(self, older_than: float | str, *, limit: int = 500) -> list[str]:
        """Return open batches last reconciled before ``older_than`` (unix seconds, or "+inf")."""
        return [text(b) for b in self.redis.zrangebyscore(self.keys.open, "-inf", older_than, 0, limit)]

    def allowance(self, per_hour: int, wanted: int) -> int:
        """Return how many of ``wanted`` backstop reconciles may go now (all of them when ``per_hour`` is 0)."""
        if per_hour <= 0 or wanted <= 0:
            return max(wanted, 0)
        return self._allowance.call(self.keys, per_hour=per_hour, wanted=wanted)

    def count(self) -> int:
        """Return how many batches are open."""
        return self.redis.zcard(self.keys.open)

    def prune_unknown(self, marked_before: float, *, limit: int = 500) -> int:
        """Delete batches marked not_found before ``marked_before`` (unix seconds); return how many."""
        return self._prune.call(self.keys, before=marked_before, limit=limit)
