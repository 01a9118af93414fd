"""The acknowledgement path: record a verified delivery and queue its batch, in one round trip.

The INGEST script is all-or-nothing: a delivery is either recorded *and*
queued, or not touched at all, so answering 2xx after it returned can never
lose an event.

On one Redis that is all. With replicas (``AISTATS_MIN_REPLICAS`` > 0) the
script and ``WAIT numreplicas timeout`` go out together in one pipeline on
one connection (WAIT counts the writes of its own connection): fewer
replicas acknowledging in time raises ``NotReplicated`` and the receiver
answers 503, so the gateway retries. At 0 nothing extra is sent.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from redis import Redis
from redis.exceptions import NoScriptError, ResponseError

from . import delivery_codec
from ..delivery import Event
from ..keys import Keys
from ..queueing import RQContract
from .coalesce import EnqueueArgs, enqueue_lua
from .script import Script, text


class NotReplicated(Exception):
    """The delivery is on the primary but fewer than ``wanted`` replicas confirmed it in time."""

    def __init__(self, acknowledged: int, wanted: int) -> None:
        super().__init__(f"{acknowledged} of {wanted} replicas acknowledged")
        self.acknowledged, self.wanted = acknowledged, wanted


class IngestScript(Script):
    """INGEST: store a delivery, deduplicated on its event id, and queue its batch."""

    LUA = """
-- KEYS[1] batch events hash   {p}:ev:{batch_id}  (event field -> packed headers+body)
-- KEYS[2] batch outcomes hash {p}:eo:{batch_id}  (event field -> "outcome:received_ms")
-- KEYS[3] batch record hash   {p}:b:{batch_id}
-- KEYS[4] delivery counters   {p}:m:deliveries
-- KEYS[5] open batches zset   {p}:open (so the sweep finds the batch even if its job dies)
-- KEYS[6..11] enqueue()'s keys (coalesce.EnqueueArgs)
-- ARGV[1] event field, ARGV[2] packed event, ARGV[3] received at (ms), ARGV[4] retention (s),
-- ARGV[5] 'batch' or 'ignore', ARGV[6] batch id, ARGV[7] most events per batch,
-- ARGV[8] most stored bytes per batch, ARGV[9..] enqueue()'s arguments.
-- Returns 'duplicate', 'limited', 'ignored', 'final', 'coalesced' or 'queued'.
-- Outcomes-hash fields starting with '#' are bookkeeping: no event field does (delivery_codec).
local field, received = ARGV[1], ARGV[3]
if redis.call('HEXISTS', KEYS[1], field) == 1 then
  redis.call('HINCRBY', KEYS[2], '#d' .. field, 1)
  redis.call('HINCRBY', KEYS[4], 'duplicate', 1)
  return 'duplicate'
end
local stored = tonumber(redis.call('HGET', KEYS[2], '#bytes') or '0')
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[7]) or stored + #ARGV[2] > tonumber(ARGV[8]) then
  redis.call('HINCRBY', KEYS[4], 'limited', 1)
  return 'limited'
end
local outcome
if ARGV[5] == 'ignore' then
  outcome = 'ignored'
elseif redis.call('HGET', KEYS[3], 'final') == '1' then
  outcome = 'final'
else
  outcome = enqueue(enqueue_args(6, 9))
  -- NX: a known open batch keeps its last-reconciled score.
  redis.call('ZADD', KEYS[5], 'NX', math.floor(tonumber(received) / 1000), ARGV[6])
end
redis.call('HSET', KEYS[1], field, ARGV[2])
redis.call('HSET', KEYS[2], field, outcome .. ':' .. received)
redis.call('HINCRBY', KEYS[2], '#bytes', #ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('HINCRBY', KEYS[4], outcome, 1)
return outcome
"""

    def __init__(self, redis: Redis, lua: str | None = None) -> None:
        super().__init__(redis, lua)
        self._kept = threading.local()

    def call(self, keys: Keys, *, event_field: str, packed: bytes, received_ms: int, retention: int,
             ignore: bool, enqueue: EnqueueArgs, replicas: int = 0, replica_timeout_ms: int = 500,
             max_events: int = 100, max_bytes: int = 256 * 1024) -> str:
        """Run INGEST; return the delivery's outcome. With ``replicas``, WAIT for them or raise ``NotReplicated``."""
        batch_id = enqueue.batch_id
        keys_ = [keys.events(batch_id), keys.outcomes(batch_id), keys.record(batch_id), keys.counters("deliveries"),
                 keys.open, *enqueue.key_list()]
        args = [event_field, packed, received_ms, retention, "ignore" if ignore else "batch", batch_id,
                max_events, max_bytes, *enqueue.arg_list()]
        if not replicas:
            return text(self._evalsha(keys_, args))
        return self._run_and_wait(keys_, args, replicas, replica_timeout_ms)

    # The acknowledgement's round trip, lean. Through redis-py's client, EVALSHA cost ~210 us of
    # CPU here, of which ~65 packing its 33 arguments one by one and ~70 taking a connection from
    # the pool and giving it back (a lock, a pid check and a poll() for stray data each way).
    # Packed in one join (~20 us) on a connection each thread keeps, it costs ~70 us. The
    # connection's own send/read, health check and redis-py's retry policy are kept; a
    # connection that failed mid-command is closed, so a kept one never holds a stray reply.

    def _evalsha(self, keys: list, args: list):
        if self.redis.connection is not None:  # a single-connection client: its own lock and connection
            return self.run(keys, args)
        command = pack_command(("EVALSHA", self._script.sha, len(keys), *keys, *args))
        try:
            return self._roundtrip(command)
        except NoScriptError:
            self.redis.script_load(self._script.script)  # a restarted or new Redis: load once, retry
            return self._roundtrip(command)

    def _roundtrip(self, command: bytes):
        conn = self._connection()
        return conn.retry.call_with_retry(lambda: _send_and_read(conn, command), lambda _error: conn.disconnect())

    def _connection(self):
        """This thread's connection, taken from the client's pool once (and again in a forked child)."""
        kept = getattr(self._kept, "conn", None)
        if kept is None or kept[0] != os.getpid():
            kept = self._kept.conn = (os.getpid(), self.redis.connection_pool.get_connection())
        return kept[1]

    def _run_and_wait(self, keys: list, args: list, replicas: int, timeout_ms: int) -> str:
        # EVALSHA by hand rather than through redis-py's Script on a pipeline,
        # which would add a SCRIPT EXISTS round trip to every call.
        for attempt in (1, 2):
            pipe = self.redis.pipeline(transaction=False)
            pipe.evalsha(self._script.sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", replicas, timeout_ms)
            outcome, acknowledged = pipe.execute(raise_on_error=False)
            if isinstance(outcome, NoScriptError) and attempt == 1:
                self.redis.script_load(self._script.script)  # a restarted or new primary: load once, retry
                continue
            if isinstance(outcome, Exception):
                raise outcome
            if isinstance(acknowledged, Exception):
                raise acknowledged
            if int(acknowledged) < replicas:
                raise NotReplicated(int(acknowledged), replicas)
            return text(outcome)
        raise AssertionError("unreachable")


def pack_command(items: Sequence[bytes | str | int]) -> bytes:
    """Return one command in the Redis protocol, as redis-py's packer writes it (text as UTF-8)."""
    out = [b"*%d\r\n" % len(items)]
    for item in items:
        kind = type(item)  # exact types first: the per-argument cost is most of this function's
        if kind is str:
            item = item.encode()
        elif kind is int:
            item = b"%d" % item
        elif kind is not bytes:
            item = _encode_other(item)
        out.append(b"$%d\r\n%s\r\n" % (len(item), item))
    return b"".join(out)


def _encode_other(item: object) -> bytes:
    if isinstance(item, str):
        return str(item).encode()
    if isinstance(item, int) and not isinstance(item, bool):
        return b"%d" % item
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    raise TypeError(f"cannot send {type(item).__name__} to Redis")


def _send_and_read(conn, command: bytes):
    try:
        conn.send_packed_command([command])
        return conn.read_response()
    except ResponseError:
        raise  # an error reply, read whole: the connection is clean
    except BaseException:
        conn.disconnect()  # whatever was half sent or half read goes with the socket
        raise


class Ingest:
    """Records verified deliveries."""

    def __init__(self, redis: Redis, keys: Keys, rq: RQContract, retention: int,
                 new_job_id: Callable[[], str], *, min_replicas: int = 0, replica_timeout_ms: int = 500,
                 max_events: int = 100, max_bytes: int = 256 * 1024) -> None:
        self.keys = keys
        self.max_events, self.max_bytes = max_events, max_bytes
        self.min_replicas, self.replica_timeout_ms = min_replicas, replica_timeout_ms
        self.rq = rq
        self.retention = retention
        self.new_job_id = new_job_id
        self._ingest = IngestScript(redis, enqueue_lua(rq) + IngestScript.LUA)

    def ingest(self, event: Event, body: bytes, headers: Mapping[str, str], *, ignore: bool = False) -> str:
        """Record a verified event and queue its batch in one atomic step; return the outcome."""
        received = int(time.time() * 1000)
        job = self.rq.new_job(event.batch_id, self.new_job_id())
        return self._ingest.call(
            self.keys,
            event_field=delivery_codec.field(event.id, event.batch_id),
            packed=delivery_codec.pack(event, body, headers, received),
            received_ms=received,
            retention=self.retention,
            ignore=ignore,
            enqueue=EnqueueArgs(self.rq, self.keys, event.batch_id, job, received),
            replicas=self.min_replicas,
            replica_timeout_ms=self.replica_timeout_ms,
            max_events=self.max_events,
            max_bytes=self.max_bytes,
        )
