"""A reconcile's end: the record, its indexes and ledger contribution, in one atomic write.

``RecordRow`` is what COMMIT stores of a record (doc, index values, ledger
contribution from ``reconcile.contribution``); ``CommitScript.call`` builds
COMMIT's KEYS and ARGV, the only place that knows their order.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from redis import Redis
from redis.client import Pipeline

from . import compression
from ..keys import Keys
from ..billing import contribution
from ..merge import is_final
from ..timestamps import parse_time
from .script import Script


def _clean(value: str) -> str:
    # The ledger joins its attribution with '|'; keep values from splitting it.
    return value.replace("|", "/")[:200]


@dataclass(frozen=True)
class RecordRow:
    """What COMMIT writes of one record."""

    doc: bytes  # the packed record JSON
    status: str
    final: bool
    session: str  # '' = none
    model: str  # '' = none
    created_ms: int  # the indexes' score
    open_score: float | None  # last reconcile time while not final; None = not open
    nanos: int  # ledger contribution, attributed to the day and groups below
    day: str
    ledger_session: str
    ledger_model: str
    ledger_provider: str

    @classmethod
    def of(cls, record: dict) -> RecordRow:
        """Return the row of ``record``."""
        created = parse_time(record.get("created_at")) or parse_time(record.get("tracked_at")) or time.time()
        final = is_final(record)
        nanos, groups = contribution(record)
        return cls(
            doc=compression.pack(json.dumps(record, separators=(",", ":"), sort_keys=True).encode()),
            status=record["status"],
            final=final,
            session=str(record.get("session_id") or ""),
            model=str(record.get("model") or ""),
            created_ms=int(created * 1000),
            open_score=None if final or record["status"] == "not_found" else time.time(),
            nanos=nanos,
            day=groups["day"],
            ledger_session=_clean(groups["session_id"]),
            ledger_model=_clean(groups["model"]),
            ledger_provider=_clean(groups["provider"]),
        )


class CommitScript(Script):
    """COMMIT: write a record, settle its events, count the upstream call, release the lock."""

    LUA = """
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
-- group keys are derived from ARGV[1] with the shapes keys.py names: a single
-- (non-cluster) Redis.
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

    def call(
        self,
        keys: Keys,
        batch_id: str,
        *,
        row: RecordRow | None = None,
        settle: tuple[str, int] | None = None,
        token: str = "",
        upstream: str = "",
        client: Redis | Pipeline | None = None,
    ) -> None:
        """Run COMMIT: ``row`` (if any), then ``settle`` = (outcome, received until ms), count, unlock."""
        if row is None:
            record_args: list = [""] * 12
        else:
            record_args = [
                row.doc, row.status, "1" if row.final else "0", row.session, row.model, row.created_ms,
                "" if row.open_score is None else row.open_score,
                row.nanos, row.day, row.ledger_session, row.ledger_model, row.ledger_provider,
            ]
        outcome, until_ms = settle or ("", 0)
        self.run(
            [keys.record(batch_id), keys.outcomes(batch_id), keys.lock(batch_id), keys.ledger_contributions,
             keys.open, keys.counters("upstream")],
            [keys.prefix, batch_id, *record_args, until_ms, outcome, token, upstream],
            client,
        )
