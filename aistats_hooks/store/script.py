"""The base of every Lua script: registered once, called on a client or a pipeline.

Each script lives in the module of its concept as a subclass whose ``LUA``
documents its KEYS and ARGV and whose ``call`` method builds them from named
arguments, so their order is written down once, next to the script.
"""

from __future__ import annotations

from typing import Any, ClassVar

from redis import Redis
from redis.client import Pipeline


class Script:
    """One Lua script on one Redis (EVALSHA, falling back to EVAL once)."""

    LUA: ClassVar[str]

    def __init__(self, redis: Redis, lua: str | None = None) -> None:
        self.redis = redis
        self._script = redis.register_script(lua if lua is not None else self.LUA)

    def run(self, keys: list, args: list, client: Redis | Pipeline | None = None) -> Any:
        """Run with ``keys`` and ``args`` on ``client`` (default: the script's Redis)."""
        return self._script(keys=keys, args=args, client=client if client is not None else self.redis)


def text(value: bytes | str) -> str:
    """Return a Redis reply as text."""
    return value.decode() if isinstance(value, bytes) else value


def lua_string(value: str) -> str:
    """Quote ``value`` as a Lua string literal (for values read at start and baked into a script)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'
