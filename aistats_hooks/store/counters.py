"""Counters shared by every process (``{p}:m:*`` hashes), for ``/metrics``."""

from __future__ import annotations

from redis import Redis
from redis.client import Pipeline

from ..keys import Keys
from .script import text


class Counters:
    """Named counter hashes: "deliveries", "rejected", "upstream", "sweep", histograms."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def read(self, name: str) -> dict[str, int]:
        """Return a counter hash as integers."""
        return {text(k): int(v) for k, v in self.redis.hgetall(self.keys.counters(name)).items()}

    def incr(self, name: str, field: str, amount: int = 1, *, pipeline: Pipeline | None = None) -> None:
        """Add to a shared counter."""
        (pipeline if pipeline is not None else self.redis).hincrby(self.keys.counters(name), field, amount)

    def add_float(self, name: str, field: str, amount: float, *, pipeline: Pipeline | None = None) -> None:
        """Add a float to a shared counter (a histogram's sum)."""
        (pipeline if pipeline is not None else self.redis).hincrbyfloat(self.keys.counters(name), field, amount)
