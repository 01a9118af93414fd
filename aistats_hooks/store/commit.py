"""A reconcile's end: the record, its indexes and ledger contribution, in one atomic write.

``RecordRow`` is what COMMIT stores of a record (doc, index values, ledger
contribution from ``reconcile.contribution``); ``CommitScript.call`` builds
COMMIT's KEYS and ARGV, the only place that knows their order.

All or nothing: Redis does not roll back a script that fails halfway, so
every value is checked before the first write, in Python (``RecordRow.of``
raises ``InvalidRecord``) and again in the script (a refusal there is also
``InvalidRecord``); amounts are whole nanos from 0 to ``billing.MAX_NANOS``.
Only the lock holder commits: given a token, COMMIT writes nothing unless
that token still holds the batch's lock (it returns False then).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import ResponseError

from . import compression
from ..keys import Keys
from ..rules.billing import MAX_NANOS, InvalidAmount, contribution
from ..rules.merge import is_final
from ..rules.status import BatchStatus
from ..rules.timestamps import iso, parse_time
from ..rules.transitions import transitions
from .script import Script


class InvalidRecord(ValueError):
    """A record COMMIT refuses to write (checked before any write)."""


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
    announce: tuple[str, ...] = ()  # transitions to append to the change feed (transitions.py)
    settled_nanos: int | None = None  # the announced settled amount, for the feed's entries

    @classmethod
    def of(cls, record: dict) -> RecordRow:
        """Return the row of ``record``, with the transitions it announces (kept in its ``announced``)."""
        out, announced = transitions(record)
        if announced is not None:
            record = dict(record, announced=announced)
        created = parse_time(record.get("created_at")) or parse_time(record.get("tracked_at")) or time.time()
        final = is_final(record)
        try:
            nanos, groups = contribution(record)
        except InvalidAmount as exc:
            raise InvalidRecord(str(exc)) from None
        if not isinstance(nanos, int) or not 0 <= nanos <= MAX_NANOS:
            raise InvalidRecord(f"ledger amount {nanos!r} is outside 0..{MAX_NANOS} nanos")
        if record.get("status") not in _STATUSES:
            raise InvalidRecord(f"unknown status {str(record.get('status'))[:40]!r}")
        return cls(
            doc=compression.pack(json.dumps(record, separators=(",", ":"), sort_keys=True).encode()),
            status=record["status"],
            final=final,
            session=str(record.get("session_id") or "")[:200],
            model=str(record.get("model") or "")[:200],
            created_ms=int(created * 1000),
            open_score=None if final or record["status"] == "not_found" else time.time(),
            nanos=nanos,
            day=groups["day"],
            ledger_session=_clean(groups["session_id"]),
            ledger_model=_clean(groups["model"]),
            ledger_provider=_clean(groups["provider"]),
            announce=tuple(t.value for t in out),
            settled_nanos=(announced or {}).get("settled_nanos"),
        )


_STATUSES = frozenset(s.value for s in BatchStatus)


# The ledger's Lua, shared by COMMIT and FORGET: a contribution is "nanos|day|session|model|provider",
# and ledger(p, value, sign) adds it to (sign 1) or takes it from (-1) every total under prefix p.
LEDGER_LUA = """
local function split(value)
  local out, start = {}, 1
  while true do
    local i = string.find(value, '|', start, true)
    if not i then out[#out + 1] = string.sub(value, start); return out end
    out[#out + 1] = string.sub(value, start, i - 1)
    start = i + 1
  end
end
local function ledger(p, value, sign)
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
"""


class CommitScript(Script):
    """COMMIT: write a record, settle its events, count the upstream call, release the lock."""

    LUA = LEDGER_LUA + """
-- Write a reconciled record with its indexes and ledger contribution, settle
-- the outcome of the events it accounts for, count the upstream call, and
-- release the lock: all or nothing, in one round trip.
-- KEYS[1] record hash {p}:b:{id}; KEYS[2] outcomes hash {p}:eo:{id}; KEYS[3] lock {p}:lock:{id};
-- KEYS[4] ledger contributions {p}:ledger:contrib; KEYS[5] open zset {p}:open;
-- KEYS[6] upstream counters {p}:m:upstream; KEYS[7] unknown batches zset {p}:unknown;
-- KEYS[8] the change feed stream {p}:changes
-- ARGV[1] key prefix, ARGV[2] batch id,
-- ARGV[3] packed doc ('' writes no record: only events, counters, lock), ARGV[4] status,
-- ARGV[5] final '1'/'0', ARGV[6] session id, ARGV[7] model ('' = none), ARGV[8] created (ms),
-- ARGV[9] open score ('' = not open), ARGV[10..14] ledger nanos, day, session, model, provider,
-- ARGV[15] events received until (ms), ARGV[16] their outcome ('' = leave events),
-- ARGV[17] lock token ('' = no lock check), ARGV[18] upstream status to count ('' = none),
-- ARGV[19] now (unix seconds: when a not_found batch was first marked),
-- ARGV[20] the feed's cap (MAXLEN ~), ARGV[21] announced settled nanos ('' = none), ARGV[22] now (ISO),
-- ARGV[23..] the transitions the record announces: appended to the feed with the record, never without it.
-- Returns 1, or 0 when ARGV[17] no longer holds the lock (nothing written but the
-- upstream count); a value it refuses raises 'invalid: ...' before any write.
-- The ledger keeps each batch's contribution ("nanos|day|session|model|provider")
-- and adds only the difference, so no batch is ever counted twice. Index and
-- group keys are derived from ARGV[1] with the shapes keys.py names: a single
-- (non-cluster) Redis.
local p, id = ARGV[1], ARGV[2]
local function reindex(name, old, new, score)
  if old and old ~= new then redis.call('ZREM', p .. ':idx:' .. name .. ':' .. old, id) end
  if new ~= '' then redis.call('ZADD', p .. ':idx:' .. name .. ':' .. new, score, id) end
end
-- Checks first: Redis keeps the writes of a script that fails halfway.
local MAX_NANOS, MAX_TOTAL = 1000000000000000, 9.0e18
local function nanos_ok(value)
  return string.match(value, '^%d+$') ~= nil and #value <= 16 and tonumber(value) <= MAX_NANOS
end
local before
if ARGV[3] ~= '' then
  if not nanos_ok(ARGV[10]) then return redis.error_reply('invalid: ledger amount ' .. ARGV[10]) end
  if not string.match(ARGV[8], '^%d+$') then return redis.error_reply('invalid: created ' .. ARGV[8]) end
  if ARGV[9] ~= '' and not tonumber(ARGV[9]) then return redis.error_reply('invalid: open score') end
  before = redis.call('HGET', KEYS[4], id)
  if before and not nanos_ok(split(before)[1]) then
    return redis.error_reply('invalid: stored contribution ' .. string.sub(before, 1, 40))
  end
  -- Every ledger hash sums non-negative contributions: none exceeds the total.
  if tonumber(redis.call('GET', p .. ':ledger:total') or '0') + tonumber(ARGV[10]) > MAX_TOTAL then
    return redis.error_reply('invalid: the ledger total would overflow')
  end
end
if ARGV[18] ~= '' then
  redis.call('HINCRBY', KEYS[6], 'retrieve', 1)
  redis.call('HINCRBY', KEYS[6], ARGV[18], 1)
end
if ARGV[17] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[17] then
  return 0  -- the lock expired (or was never ours): a newer run may have written
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
  if ARGV[4] == 'not_found' then
    redis.call('ZADD', KEYS[7], 'NX', ARGV[19], id)
  else
    redis.call('ZREM', KEYS[7], id)
  end
  local new = table.concat({ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14]}, '|')
  if before ~= new then
    if before then ledger(p, before, -1) end
    ledger(p, new, 1)
    redis.call('HSET', KEYS[4], id, new)
  end
  for i = 23, #ARGV do
    redis.call('XADD', KEYS[8], 'MAXLEN', '~', ARGV[20], '*', 'batch_id', id, 'transition', ARGV[i],
               'status', ARGV[4], 'settled_nanos', ARGV[21], 'at', ARGV[22])
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
if ARGV[17] ~= '' then
  redis.call('DEL', KEYS[3])
end
return 1
"""

    def __init__(self, redis: Redis, changes_maxlen: int = 1_000_000) -> None:
        super().__init__(redis)
        self.changes_maxlen = changes_maxlen

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
    ) -> bool:
        """Run COMMIT: ``row`` (if any), then ``settle`` = (outcome, received until ms), count, unlock.

        Return False when ``token`` no longer held the lock (nothing written);
        True otherwise (and when queued on a pipeline).
        """
        announce: tuple[str, ...] = ()
        settled = ""
        if row is None:
            record_args: list = [""] * 12
        else:
            record_args = [
                row.doc, row.status, "1" if row.final else "0", row.session, row.model, row.created_ms,
                "" if row.open_score is None else row.open_score,
                row.nanos, row.day, row.ledger_session, row.ledger_model, row.ledger_provider,
            ]
            announce = row.announce
            settled = "" if row.settled_nanos is None else row.settled_nanos
        outcome, until_ms = settle or ("", 0)
        try:
            reply = self.run(
                [keys.record(batch_id), keys.outcomes(batch_id), keys.lock(batch_id), keys.ledger_contributions,
                 keys.open, keys.counters("upstream"), keys.unknown, keys.changes],
                [keys.prefix, batch_id, *record_args, until_ms, outcome, token, upstream, int(time.time()),
                 self.changes_maxlen, settled, iso(time.time()), *announce],
                client,
            )
        except ResponseError as exc:
            if "invalid: " in str(exc):
                raise InvalidRecord(str(exc)) from None
            raise
        return reply != 0

    def call_replicated(self, keys: Keys, batch_id: str, *, replicas: int, timeout_ms: int, **fields) -> bool:
        """``call``, then WAIT for ``replicas`` on the same connection; raise ``NotReplicated`` when too few confirm."""
        from .ingest import NotReplicated

        pipe = self.redis.pipeline(transaction=False)
        self.call(keys, batch_id, client=pipe, **fields)
        pipe.execute_command("WAIT", replicas, timeout_ms)
        try:
            reply, acknowledged = pipe.execute()
        except ResponseError as exc:
            if "invalid: " in str(exc):
                raise InvalidRecord(str(exc)) from None
            raise
        if reply == 0:
            return False  # the lock was lost: nothing was written
        if int(acknowledged) < replicas:
            raise NotReplicated(int(acknowledged), replicas)
        return True
