"""A batch's stored deliveries: list them, find one, compact them once the batch is final.

INGEST writes them; ``delivery_codec`` is their stored form.
"""

from __future__ import annotations

from collections.abc import Collection

from redis import Redis

from . import delivery_codec
from ..keys import Keys
from .script import text


class Deliveries:
    """Reads and compaction of stored deliveries."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def of_batch(self, batch_id: str) -> list[dict]:
        """Return the batch's stored events with their decoded bodies, oldest first."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.events(batch_id))
        pipe.hgetall(self.keys.outcomes(batch_id))
        packed, states = pipe.execute()
        states = {text(k): text(v) for k, v in states.items()}
        events = [delivery_codec.decode(batch_id, text(f), blob, states) for f, blob in packed.items()]
        return sorted(events, key=lambda e: (e["received_at"], e["id"]))

    def find(self, event_id: str, batch_id: str) -> dict | None:
        """Return one stored event of ``batch_id``, or None (events are stored per batch)."""
        found = next((e for e in self.of_batch(batch_id) if e["id"] == event_id), None)
        if found:
            found["batch_id"] = batch_id
        return found

    def compact(self, batch_id: str, keep_types: Collection[str]) -> int:
        """Drop the bodies of a final batch's events whose type is not in ``keep_types``."""
        key = self.keys.events(batch_id)
        stripped = {name: small for name, blob in self.redis.hgetall(key).items()
                    if (small := delivery_codec.strip_body(blob, keep_types)) is not None}
        if stripped:
            # Fields only, never new ones: an event that arrives meanwhile is untouched.
            self.redis.hset(key, mapping=stripped)
        return len(stripped)
