"""The open-batch set the sweep reads (INGEST adds to it, COMMIT scores or removes)."""

from __future__ import annotations

from redis import Redis

from ..keys import Keys
from .script import text


class OpenBatches:
    """Batches not final, by last reconcile time."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def due(self, older_than: float | str, *, limit: int = 500) -> list[str]:
        """Return open batches last reconciled before ``older_than`` (unix seconds, or "+inf")."""
        return [text(b) for b in self.redis.zrangebyscore(self.keys.open, "-inf", older_than, 0, limit)]

    def count(self) -> int:
        """Return how many batches are open."""
        return self.redis.zcard(self.keys.open)
