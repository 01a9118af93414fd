"""The open-batch set the sweep reads (INGEST adds to it, COMMIT scores or removes), and pruning unknown batches.

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


class OpenBatches:
    """Batches not final, by last reconcile time; unknown batches past their retention."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._prune = PruneScript(redis)

    def due(self, older_than: float | str, *, limit: int = 500) -> list[str]:
        """Return open batches last reconciled before ``older_than`` (unix seconds, or "+inf")."""
        return [text(b) for b in self.redis.zrangebyscore(self.keys.open, "-inf", older_than, 0, limit)]

    def count(self) -> int:
        """Return how many batches are open."""
        return self.redis.zcard(self.keys.open)

    def prune_unknown(self, marked_before: float, *, limit: int = 500) -> int:
        """Delete batches marked not_found before ``marked_before`` (unix seconds); return how many."""
        return self._prune.call(self.keys, before=marked_before, limit=limit)
