"""The naive reconcile job, the latency phase's baseline: one retrieve and one HSET per delivery, nothing else."""

from __future__ import annotations

import functools
import os

from redis import Redis

from aistats_hooks.sdk import AIStats

PREFIX = "naive"


@functools.lru_cache(maxsize=1)
def _resources() -> tuple[AIStats, Redis]:
    return (AIStats(os.environ["AISTATS_API_KEY"], os.environ["AISTATS_BASE_URL"]),
            Redis.from_url(os.environ["REDIS_URL"]))


def naive_reconcile(batch_id: str) -> str:
    """Retrieve ``batch_id`` and write its status where ``drive.wait_final`` looks (``naive:b:{id}``)."""
    client, redis = _resources()
    batch = client.retrieve_batch(batch_id)
    redis.hset(f"{PREFIX}:b:{batch_id}", mapping={"status": batch["status"], "final": "1"})
    return batch["status"]
