"""Forget a batch: its record, stored events and index entries, in one atomic step (``forget BATCH_ID``).

For test batches (``trigger``) and ids the gateway never knew. A batch's
settled ledger contribution is money that was billed: forgetting keeps it
unless ``force`` (then the ledger totals drop by exactly that contribution,
as COMMIT would have added it). A batch whose reconcile is queued or running
is not forgotten (the job would write the record back); try again after it ran.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from ..keys import Keys
from .commit import LEDGER_LUA
from .script import Script, text


@dataclass(frozen=True)
class Forgotten:
    """What ``forget`` did: ``outcome`` is forgotten, unknown, settled (refused), busy (refused)."""

    outcome: str
    nanos: int = 0  # the ledger contribution removed (forgotten) or kept back (settled)


class ForgetScript(Script):
    """FORGET: drop one batch's keys and index entries; the ledger only when forced."""

    LUA = LEDGER_LUA + """
-- KEYS[1] record {p}:b:{id}; KEYS[2] events {p}:ev:{id}; KEYS[3] outcomes {p}:eo:{id};
-- KEYS[4] pending {p}:pending:{id}; KEYS[5] recent {p}:recent:{id}; KEYS[6] lock {p}:lock:{id};
-- KEYS[7] ledger contributions {p}:ledger:contrib; KEYS[8] open zset {p}:open; KEYS[9] unknown zset {p}:unknown
-- ARGV[1] prefix, ARGV[2] batch id, ARGV[3] '1' to remove a settled ledger contribution too.
-- Index and ledger keys are derived from the prefix with the shapes keys.py names (as COMMIT does).
local p, id = ARGV[1], ARGV[2]
if redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3]) == 0 then return {'unknown', '0'} end
if redis.call('EXISTS', KEYS[4], KEYS[6]) > 0 then return {'busy', '0'} end
local contrib = redis.call('HGET', KEYS[7], id)
local nanos = contrib and split(contrib)[1] or '0'
if nanos ~= '0' and ARGV[3] ~= '1' then return {'settled', nanos} end
if contrib then
  ledger(p, contrib, -1)  -- exactly what COMMIT added (a '0' contribution adds nothing)
  redis.call('HDEL', KEYS[7], id)
end
local old = redis.call('HMGET', KEYS[1], 'status', 'session', 'model')
local names = {'status', 'session', 'model'}
for i = 1, 3 do
  if old[i] and old[i] ~= '' then redis.call('ZREM', p .. ':idx:' .. names[i] .. ':' .. old[i], id) end
end
redis.call('ZREM', p .. ':idx:all', id)
redis.call('ZREM', KEYS[8], id)
redis.call('ZREM', KEYS[9], id)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[5])
return {'forgotten', nanos}
"""

    def call(self, keys: Keys, batch_id: str, *, force: bool = False) -> Forgotten:
        """Forget ``batch_id``; see ``Forgotten``."""
        outcome, nanos = self.run(
            [keys.record(batch_id), keys.events(batch_id), keys.outcomes(batch_id), keys.pending(batch_id),
             keys.recent(batch_id), keys.lock(batch_id), keys.ledger_contributions, keys.open,
             keys._key("unknown")],
            [keys.prefix, batch_id, "1" if force else ""],
        )
        return Forgotten(text(outcome), int(text(nanos)))


def forget(redis: Redis, keys: Keys, batch_id: str, *, force: bool = False) -> Forgotten:
    """Forget one batch (see the module's docstring)."""
    return ForgetScript(redis).call(keys, batch_id, force=force)
