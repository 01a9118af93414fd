"""The acknowledgement path: record a verified delivery, then make sure its batch's reconcile job exists.

Two steps. INGEST, one Lua script on our own keys, is all-or-nothing: the delivery is
recorded (deduplicated on its event id) and its batch's pending slot names the job to
come. Then that job is enqueued through RQ's public API (``queueing.enqueue``). Only
after both is the delivery answered 2xx, so an acknowledged event is durable and its
reconcile exists. A crash between the two answers nothing: the gateway retries, the
retry is a duplicate, and a duplicate ensures the job the slot names exists
(``queueing.ensure``). ``tests/test_ack_crash.py`` kills the web process there.

On one Redis that is all. With replicas (``AISTATS_MIN_REPLICAS`` > 0) the
script and ``WAIT numreplicas timeout`` go out together in one pipeline on
one connection (WAIT counts the writes of its own connection): fewer
replicas acknowledging in time raises ``NotReplicated`` and the receiver
answers 503, so the gateway retries. At 0 nothing extra is sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from redis import Redis
from redis.exceptions import NoScriptError
from rq import Queue

from . import delivery_codec
from ..rules.delivery import Event
from ..keys import Keys
from .. import queueing
from .coalesce import TAKE_SLOT_LUA, SlotArgs, follow_up
from .script import Script, text


# Deliveries a reconcile's span links to (tracing.reconcile_span reads them); more are rare and add nothing to read.
MAX_TRACE_CONTEXTS = 16


class NotReplicated(Exception):
    """The delivery is on the primary but fewer than ``wanted`` replicas confirmed it in time."""

    def __init__(self, acknowledged: int, wanted: int) -> None:
        super().__init__(f"{acknowledged} of {wanted} replicas acknowledged")
        self.acknowledged, self.wanted = acknowledged, wanted


class IngestScript(Script):
    """INGEST: store a delivery, deduplicated on its event id, and queue its batch."""

    LUA = TAKE_SLOT_LUA + """
-- KEYS[1] batch events hash   {p}:ev:{batch_id}  (event field -> packed headers+body)
-- KEYS[2] batch outcomes hash {p}:eo:{batch_id}  (event field -> "outcome:received_ms")
-- KEYS[3] batch record hash   {p}:b:{batch_id}
-- KEYS[4] delivery counters   {p}:m:deliveries
-- KEYS[5] open batches zset   {p}:open (so the sweep finds the batch even if its job dies)
-- KEYS[6..8] take_slot()'s keys (coalesce.SlotArgs)
-- KEYS[9] trace contexts      {p}:tp:{batch_id} (tracing: the deliveries a reconcile continues and links)
-- ARGV[1] event field, ARGV[2] packed event, ARGV[3] received at (ms), ARGV[4] retention (s),
-- ARGV[5] 'batch' or 'ignore', ARGV[6] most events per batch, ARGV[7] most stored bytes per batch,
-- ARGV[8..12] take_slot()'s arguments (ARGV[8] the batch id), ARGV[13] the delivery's traceparent ('' = none),
-- ARGV[14] how many trace contexts a batch keeps.
-- Returns {outcome}: 'limited', 'ignored', 'final' or 'coalesced'; {'queued', job id, wait ms}
-- (the caller enqueues that job); or {'duplicate', the job id the batch's slot names, or false}.
-- Outcomes-hash fields starting with '#' are bookkeeping: no event field does (delivery_codec).
local field, received = ARGV[1], ARGV[3]
if redis.call('HEXISTS', KEYS[1], field) == 1 then
  redis.call('HINCRBY', KEYS[2], '#d' .. field, 1)
  redis.call('HINCRBY', KEYS[4], 'duplicate', 1)
  return {'duplicate', redis.call('GET', KEYS[6])}
end
local stored = tonumber(redis.call('HGET', KEYS[2], '#bytes') or '0')
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[6]) or stored + #ARGV[2] > tonumber(ARGV[7]) then
  redis.call('HINCRBY', KEYS[4], 'limited', 1)
  return {'limited'}
end
local reply
if ARGV[5] == 'ignore' then
  reply = {'ignored'}
elseif redis.call('HGET', KEYS[3], 'final') == '1' then
  reply = {'final'}
else
  reply = take_slot(slot_args(6, 8))
  -- NX: a known open batch keeps its last-reconciled score.
  redis.call('ZADD', KEYS[5], 'NX', math.floor(tonumber(received) / 1000), ARGV[8])
  if ARGV[13] ~= '' then
    redis.call('RPUSH', KEYS[9], ARGV[13])
    redis.call('LTRIM', KEYS[9], -tonumber(ARGV[14]), -1)
    redis.call('EXPIRE', KEYS[9], 86400)
  end
end
local outcome = reply[1]
redis.call('HSET', KEYS[1], field, ARGV[2])
redis.call('HSET', KEYS[2], field, outcome .. ':' .. received)
redis.call('HINCRBY', KEYS[2], '#bytes', #ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('HINCRBY', KEYS[4], outcome, 1)
return reply
"""

    def call(self, keys: Keys, *, event_field: str, packed: bytes, received_ms: int, retention: int,
             ignore: bool, slot: SlotArgs, replicas: int = 0, replica_timeout_ms: int = 500,
             max_events: int = 100, max_bytes: int = 256 * 1024, traceparent: str | None = None) -> list:
        """Run INGEST; return its reply. With ``replicas``, WAIT for them or raise ``NotReplicated``."""
        batch_id = slot.batch_id
        keys_ = [keys.events(batch_id), keys.outcomes(batch_id), keys.record(batch_id), keys.counters("deliveries"),
                 keys.open, *slot.key_list(), keys.trace_contexts(batch_id)]
        args = [event_field, packed, received_ms, retention, "ignore" if ignore else "batch", max_events, max_bytes,
                *slot.arg_list(), traceparent or "", MAX_TRACE_CONTEXTS]
        if not replicas:
            return self.run(keys_, args)
        return self._run_and_wait(keys_, args, replicas, replica_timeout_ms)

    def _run_and_wait(self, keys: list, args: list, replicas: int, timeout_ms: int) -> list:
        # The script and WAIT in one pipeline on one connection: WAIT counts that connection's writes.
        # EVALSHA by hand rather than through redis-py's Script on a pipeline, which would add a
        # SCRIPT EXISTS round trip to every call.
        for attempt in (1, 2):
            pipe = self.redis.pipeline(transaction=False)
            pipe.evalsha(self._script.sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", replicas, timeout_ms)
            reply, acknowledged = pipe.execute(raise_on_error=False)
            if isinstance(reply, NoScriptError) and attempt == 1:
                self.redis.script_load(self._script.script)  # a restarted or new primary: load once, retry
                continue
            if isinstance(reply, Exception):
                raise reply
            if isinstance(acknowledged, Exception):
                raise acknowledged
            if int(acknowledged) < replicas:
                raise NotReplicated(int(acknowledged), replicas)
            return reply
        raise AssertionError("unreachable")


class Ingest:
    """Records verified deliveries."""

    def __init__(self, redis: Redis, keys: Keys, queue: Queue, retention: int,
                 new_job_id: Callable[[], str], *, min_replicas: int = 0, replica_timeout_ms: int = 500,
                 max_events: int = 100, max_bytes: int = 256 * 1024) -> None:
        self.keys = keys
        self.queue = queue
        self.max_events, self.max_bytes = max_events, max_bytes
        self.min_replicas, self.replica_timeout_ms = min_replicas, replica_timeout_ms
        self.retention = retention
        self.new_job_id = new_job_id
        self._ingest = IngestScript(redis)

    def ingest(self, event: Event, body: bytes, headers: Mapping[str, str], *, ignore: bool = False,
               traceparent: str | None = None) -> str:
        """Record a verified event, then make sure its batch's reconcile job exists; return the outcome."""
        received = int(time.time() * 1000)
        reply = self._ingest.call(
            self.keys,
            event_field=delivery_codec.field(event.id, event.batch_id),
            packed=delivery_codec.pack(event, body, headers, received),
            received_ms=received,
            retention=self.retention,
            ignore=ignore,
            slot=SlotArgs(self.keys, event.batch_id, self.new_job_id(), received),
            replicas=self.min_replicas,
            replica_timeout_ms=self.replica_timeout_ms,
            max_events=self.max_events,
            max_bytes=self.max_bytes,
            traceparent=traceparent,
        )
        outcome = text(reply[0])
        if outcome == "duplicate":
            if len(reply) > 1 and reply[1]:  # the repair of a crash between the two steps
                queueing.ensure(self.queue, event.batch_id, text(reply[1]))
            return outcome
        return follow_up(self.queue, event.batch_id, reply)
