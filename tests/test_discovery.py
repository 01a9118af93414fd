"""Discovery from the gateway's list (aistats_hooks/discovery.py): real Redis, real RQ worker, the sandbox."""

from __future__ import annotations

import httpx
import pytest

from aistats_hooks import discovery
from aistats_hooks.sandbox import SandboxServer
from tests.helpers import run_worker, wait_for
from workers import context
from workers.discovery_job import discover

API_KEY = "sk_sandbox_discovery"
TERMINAL = {"completed", "failed", "cancelled", "expired"}


@pytest.fixture
def sandbox():
    with SandboxServer(API_KEY, speed=3600, seed=5, poll_seconds=0, fast_poll_seconds=0) as srv:
        yield srv


@pytest.fixture
def ctx(settings, sandbox, monkeypatch):
    for name, value in {
        "REDIS_URL": settings.redis_url, "AISTATS_API_KEY": API_KEY, "AISTATS_BASE_URL": sandbox.base_url,
        "AISTATS_KEY_PREFIX": settings.key_prefix, "AISTATS_QUEUE": settings.queue_name,
        "AISTATS_WEBHOOK_SECRET": "whsec_test_secret", "AISTATS_DEBOUNCE_MS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    context.current.cache_clear()
    yield context.current()
    context.current.cache_clear()


def test_batches_we_never_heard_of_are_discovered_and_reconciled(ctx, sandbox):
    with httpx.Client(base_url=sandbox.base_url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        ids = [http.post("/batches", json={"prompts": ["a"]}).json()["id"] for _ in range(3)]
    wait_for(lambda: all(sandbox.gateway.truth(i)["status"] in TERMINAL for i in ids))
    counts = discover()
    assert counts["discovered"] == 3 and counts["queued"] == 3
    run_worker(ctx.store)
    assert all(ctx.store.get(i)["status"] == sandbox.gateway.truth(i)["status"] for i in ids)
    # Known and final now: a second poll lists them but queues nothing, and costs only the list calls.
    sandbox.gateway.stats.reset()
    again = discover()
    assert again["listed"] == 3 and again["queued"] == 0 and again["discovered"] == 0
    assert sandbox.gateway.stats.get("retrieve_calls", "total") == 0
    assert sum(sandbox.gateway.stats.snapshot()["api_calls_by_second"].values()) == len(discovery.GROUPS)
    assert ctx.store.counters("discovery")["discovered"] == 3


def test_a_batch_listed_in_another_status_is_reconciled(ctx, sandbox):
    with httpx.Client(base_url=sandbox.base_url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        batch_id = http.post("/batches", json={"prompts": ["a"]}).json()["id"]
    wait_for(lambda: sandbox.gateway.truth(batch_id)["status"] in TERMINAL)
    stale = {"id": batch_id, "status": "in_progress", "request_counts": {}, "billing": None}
    ctx.store.save(stale)
    counts = discover()
    assert counts["changed"] == 1 and counts["queued"] == 1
    run_worker(ctx.store)
    assert ctx.store.get(batch_id)["status"] == sandbox.gateway.truth(batch_id)["status"]


def test_discovered_batches_are_reported_in_metrics(ctx, sandbox, settings):
    with httpx.Client(base_url=sandbox.base_url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        http.post("/batches", json={"prompts": ["a"]}).raise_for_status()
    wait_for(lambda: discover()["discovered"] >= 1)
    from aistats_hooks.web import create_app

    app = create_app(settings)
    text = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {settings.query_api_token}"}).text
    assert 'aistats_discovery_batches_total{kind="discovered"} 1.0' in text
