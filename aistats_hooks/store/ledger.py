"""Reads of the billing ledger (COMMIT in ``commit`` writes it; see ``keys`` for its shape)."""

from __future__ import annotations

from redis import Redis

from ..keys import Keys
from .script import text


class Ledger:
    """Ledger totals overall, by group, and by day."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def total(self) -> int:
        """Return the nanos of every batch."""
        return int(self.redis.get(self.keys.ledger_total) or 0)

    def by(self, group: str) -> dict[str, int]:
        """Return all-time totals by ``group`` ("day", "session_id", "model" or "provider")."""
        return {text(k): int(v) for k, v in self.redis.hgetall(self.keys.ledger(group)).items()}

    def by_on_days(self, group: str, days: list[str]) -> dict[str, int]:
        """Return totals by ``group`` summed over ``days`` (ISO dates); for "day", the totals of each."""
        if not days:
            return {}
        if group == "day":
            values = self.redis.hmget(self.keys.ledger("day"), days)
            return {d: int(v) for d, v in zip(days, values) if v is not None}
        pipe = self.redis.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(self.keys.ledger(group, day))
        totals: dict[str, int] = {}
        for part in pipe.execute():
            for key, value in part.items():
                totals[text(key)] = totals.get(text(key), 0) + int(value)
        return totals

    def days(self) -> list[str]:
        """Return the days with a ledger entry, oldest first."""
        return sorted(d for d in map(text, self.redis.hkeys(self.keys.ledger("day"))) if d[:1].isdigit())
