"""Reconciled records and the indexes that list them (written by ``commit``; read here)."""

from __future__ import annotations

import json

from redis import Redis

from . import compression
from ..keys import Keys
from .script import text


class Records:
    """Reads of batch records and their created-time indexes."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def get(self, batch_id: str) -> dict | None:
        """Return the reconciled record of ``batch_id``, or None."""
        doc = self.redis.hget(self.keys.record(batch_id), "doc")
        return json.loads(compression.unpack(doc)) if doc else None

    def get_many(self, batch_ids: list[str]) -> list[dict | None]:
        """Return the records of ``batch_ids`` in order (None where unknown)."""
        pipe = self.redis.pipeline(transaction=False)
        for batch_id in batch_ids:
            pipe.hget(self.keys.record(batch_id), "doc")
        return [json.loads(compression.unpack(doc)) if doc else None for doc in pipe.execute()]

    def index_key(self, *, status: str | None = None, session_id: str | None = None,
                  model: str | None = None) -> str:
        """Return the index to list from: the narrowest filter given (session, model, status), else all."""
        if session_id:
            return self.keys.index("session_id", session_id)
        if model:
            return self.keys.index("model", model)
        if status:
            return self.keys.index("status", status)
        return self.keys.index_all

    def window(self, index: str, offset: int, count: int, *, low: int | None = None, high: int | None = None,
               oldest_first: bool = False) -> list[tuple[str, int]]:
        """Return ``count`` (batch id, created ms) of ``index`` created within [low, high], from ``offset``."""
        lo, hi = ("-inf" if low is None else low), ("+inf" if high is None else high)
        if oldest_first:
            rows = self.redis.zrangebyscore(index, lo, hi, start=offset, num=count, withscores=True)
        else:
            rows = self.redis.zrevrangebyscore(index, hi, lo, start=offset, num=count, withscores=True)
        return [(text(member), int(score)) for member, score in rows]

    def count_between(self, index: str, low: int | str | None = None, high: int | str | None = None) -> int:
        """Return how many of ``index`` were created within [low, high] (either end open when None)."""
        return self.redis.zcount(index, "-inf" if low is None else low, "+inf" if high is None else high)

    def newest(self, index: str, offset: int, count: int) -> list[tuple[str, int]]:
        """Return ``count`` (batch id, created ms) of ``index`` from ``offset``, newest first."""
        rows = self.redis.zrevrange(index, offset, offset + count - 1, withscores=True)
        return [(text(member), int(score)) for member, score in rows]

    def position(self, index: str, batch_id: str) -> int | None:
        """Return the newest-first position of ``batch_id`` in ``index``, or None."""
        return self.redis.zrevrank(index, batch_id)

    def count_newer(self, index: str, score: int) -> int:
        """Return how many of ``index`` are newer than ``score``."""
        return self.redis.zcount(index, f"({score}", "+inf")

    def count(self, index: str) -> int:
        """Return the size of ``index``."""
        return self.redis.zcard(index)
