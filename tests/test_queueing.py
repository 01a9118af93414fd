"""Jobs our Lua scripts enqueue must be exactly what RQ's own enqueue writes.

Each test enqueues one job through our script, snapshots every RQ key it
touched, deletes them, has RQ itself enqueue the same job (same id, same
clock) with ``Queue.enqueue_job`` or ``Queue.schedule_job``, and compares the
two snapshots key by key and field by field. No difference is allowed: the
script sets ``status`` and (only when it queues, as RQ does) ``enqueued_at``
itself, and every other field comes from RQ's ``Job.to_dict()``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import rq.job
import rq.queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from aistats_hooks import queueing
from aistats_hooks.store import Store
from tests.helpers import make_event, signed

FROZEN = datetime(2026, 6, 17, 16, 0, 0, 123456, tzinfo=timezone.utc)


@pytest.fixture
def frozen_rq_clock(monkeypatch):
    """Make RQ stamp created_at and enqueued_at with one fixed time, for both enqueues."""
    monkeypatch.setattr(rq.job, "now", lambda: FROZEN)
    monkeypatch.setattr(rq.queue, "now", lambda: FROZEN)


def snapshot(redis, store: Store) -> dict:
    """Return every RQ key of the test's queue and jobs (type, TTL, content), and rq:queues membership."""
    out: dict = {"rq:queues has our queue": bool(redis.sismember(store.rq.queues_key, store.rq.queue_key))}
    for key in sorted(redis.scan_iter(match=f"rq:*{store.settings.key_prefix}*", count=1000)):
        kind = redis.type(key).decode()
        if kind == "hash":
            value = {k.decode(): v for k, v in redis.hgetall(key).items()}
        elif kind == "list":
            value = redis.lrange(key, 0, -1)
        elif kind == "zset":
            value = redis.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(redis.smembers(key))
        else:
            value = redis.get(key)
        out[key.decode()] = (kind, redis.ttl(key), value)
    return out


def forget(redis, store: Store, snap: dict) -> None:
    """Delete what ``snap`` lists, so RQ can write the same job afresh."""
    redis.delete(*[k for k in snap if k.startswith("rq:") and k != "rq:queues has our queue"])
    redis.srem(store.rq.queues_key, store.rq.queue_key)
    assert snapshot(redis, store) == {"rq:queues has our queue": False}


def test_a_queued_job_is_what_rqs_enqueue_job_writes(redis_client, settings, frozen_rq_clock):
    store = Store(redis_client, settings)
    assert store.request_reconcile("batch_q") == "queued"
    (job_id,) = store.queue.job_ids
    ours = snapshot(redis_client, store)
    assert ours["rq:queues has our queue"]  # `rq info` lists the queue with no worker running
    forget(redis_client, store, ours)

    store.queue.enqueue_job(queueing.reconcile_job(store.queue, "batch_q", job_id))
    theirs = snapshot(redis_client, store)
    assert ours == theirs
    assert set(ours) == {"rq:queues has our queue", store.rq.job_key(job_id), store.rq.queue_key}


def test_a_debounced_job_is_what_rqs_schedule_job_writes(redis_client, settings, frozen_rq_clock):
    store = Store(redis_client, settings)
    redis_client.set(store.keys.recent("batch_s"), "1", px=60_000)  # a retrieve just happened
    assert store.request_reconcile("batch_s") == "queued"
    registry = ScheduledJobRegistry(queue=store.queue)
    (job_id,) = registry.get_job_ids()
    ours = snapshot(redis_client, store)
    # RQ's scheduler reads our score as the end of the debounce window, not before and not later.
    now = int(time.time())
    assert job_id not in registry.get_jobs_to_schedule(now - 1)
    assert job_id in registry.get_jobs_to_schedule(now + 61)
    due = datetime.fromtimestamp(redis_client.zscore(registry.key, job_id), timezone.utc)
    forget(redis_client, store, ours)

    store.queue.schedule_job(queueing.reconcile_job(store.queue, "batch_s", job_id), due)
    theirs = snapshot(redis_client, store)
    assert ours == theirs
    assert set(ours) == {"rq:queues has our queue", store.rq.job_key(job_id), registry.key}
    assert b"enqueued_at" not in redis_client.hkeys(store.rq.job_key(job_id))  # RQ stamps it when it queues


def test_an_ingested_delivery_queues_the_same_job_as_rq(client, store, redis_client, frozen_rq_clock):
    body, headers = signed(make_event("batch_i"))
    assert client.post("/webhooks/aistats", data=body, headers=headers).status_code == 202
    (job_id,) = store.queue.job_ids
    ours = snapshot(redis_client, store)
    forget(redis_client, store, ours)
    store.queue.enqueue_job(queueing.reconcile_job(store.queue, "batch_i", job_id))
    assert ours == snapshot(redis_client, store)


def test_rq_restores_the_call(redis_client, settings):
    store = Store(redis_client, settings)
    store.request_reconcile("batch_r")
    job = Job.fetch(store.queue.job_ids[0], connection=redis_client)
    assert job.func_name == queueing.RECONCILE_FUNC
    assert job.args == ("batch_r",) and job.kwargs == {}
    assert job.retries_left == len(queueing.RETRY_INTERVALS)
    assert job.retry_intervals == queueing.RETRY_INTERVALS
    assert job.get_status() == "queued" and job.origin == settings.queue_name


def rq_info(redis_url: str) -> list[str]:
    """Run RQ's own `rq info` CLI on the test Redis; return its raw queue lines."""
    rq_cli = Path(sys.executable).with_name("rq")
    result = subprocess.run([str(rq_cli), "info", "--url", redis_url, "--only-queues", "--raw"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.slow
def test_rq_info_lists_the_queue_and_its_jobs_with_no_worker(client, store, settings, redis_url):
    ours = f"queue {settings.queue_name} "
    assert not any(line.startswith(ours) for line in rq_info(redis_url))
    for pct, batch_id in ((10, "batch_x"), (20, "batch_y"), (30, "batch_x")):  # the last one coalesces
        body, headers = signed(make_event(batch_id, "batch.progress", key=f"batch.progress:{pct}"))
        assert client.post("/webhooks/aistats", data=body, headers=headers).status_code == 202
    assert [line for line in rq_info(redis_url) if line.startswith(ours)] == [
        f"{ours}2, 0 executing, 0 finished, 0 failed"
    ]
