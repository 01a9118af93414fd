"""The gateway call budget shared by every process: a token bucket (GCRA) and a shared pause, in Redis.

``TakeCall`` grants one call when the bucket allows it and otherwise answers
how long to wait; it spaces calls at least ``1 / rps`` apart across every
process, so no one-second window sees more than ``AISTATS_UPSTREAM_RPS``
calls. ``PauseCalls`` records a 429's Retry-After once for everyone: until it
ends, ``TakeCall`` answers "wait" to every process, not only to the job that
got the 429. Time is Redis's own (``TIME``), so processes' clocks never disagree.
"""

from __future__ import annotations

from redis import Redis

from ..keys import Keys
from .script import Script


class TakeCall(Script):
    """KEYS: [1] the bucket (next allowed call, microseconds), [2] the pause. ARGV: [1] microseconds between calls (0 = no cap).

    Returns 0 when the call may go now, else the milliseconds to wait before asking again.
    """

    LUA = """
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return paused end
local interval = tonumber(ARGV[1])
if interval <= 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local next_at = tonumber(redis.call('GET', KEYS[1]) or '0')
if next_at > now then return math.max(1, math.ceil((next_at - now) / 1000)) end
-- Granted: the next call may go one interval from now (the key outlives it by a second).
redis.call('SET', KEYS[1], string.format('%d', now + interval), 'PX', math.ceil(interval / 1000) + 1000)
return 0
"""

    def call(self, keys: Keys, rps: float) -> int:
        """Return 0 when a call may go now, else milliseconds to wait."""
        interval = int(1_000_000 / rps) if rps > 0 else 0
        return int(self.run([keys.upstream_bucket, keys.upstream_paused], [interval]))


class PauseCalls(Script):
    """KEYS: [1] the pause. ARGV: [1] milliseconds. Extends the pause, never shortens it; returns its PTTL."""

    LUA = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
return redis.call('PTTL', KEYS[1])
"""

    def call(self, keys: Keys, milliseconds: int) -> int:
        """Pause every process's calls for at least ``milliseconds``."""
        return int(self.run([keys.upstream_paused], [max(1, int(milliseconds))]))


class Budget:
    """The two scripts on one Redis, for one key prefix."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.keys = keys
        self._take = TakeCall(redis)
        self._pause = PauseCalls(redis)

    def take(self, rps: float) -> int:
        """Return 0 when a call may go now, else milliseconds to wait (a pause applies even without a cap)."""
        return self._take.call(self.keys, rps)

    def pause(self, milliseconds: int) -> int:
        """Pause every process's gateway calls for ``milliseconds``."""
        return self._pause.call(self.keys, milliseconds)
