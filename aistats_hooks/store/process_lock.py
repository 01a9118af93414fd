"""A lock one process holds for a short task (dispatching the change feed, polling the gateway's list).

``SET NX PX`` with a fresh token; released only by its holder, because a slow
run's lock may have expired and been taken by another process meanwhile.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis

from .script import text


@contextmanager
def hold(redis: Redis, key: str, ms: int) -> Iterator[bool]:
    """Take ``key`` for ``ms`` milliseconds if free; yield whether this process holds it."""
    token = uuid.uuid4().hex
    held = bool(redis.set(key, token, nx=True, px=ms))
    try:
        yield held
    finally:
        if held and text(redis.get(key)) == token:
            redis.delete(key)
