"""The gateway's list as its source answers it, and discovery finding every ending anyway.

routes/v1/data/batches.ts (parseBatchListStatuses, parseBatchListLimit, handleList): ``validating``
is not a filter name, a filter of unknown names only lists everything, no ``limit`` lists one item;
the order is the record's ``updated_at``, which every successful retrieve bumps (handleRetrieve
saves the record) and the gateway's reconciler pass bumps over open batches
(pipeline/batch-reconciliation.ts). Real HTTP, real Redis, real RQ worker.
"""

from __future__ import annotations

import time

import httpx
import pytest

from aistats_hooks import discovery
from aistats_hooks.sandbox import SandboxServer
from aistats_hooks.sandbox.clock import SimClock
from aistats_hooks.sandbox.population import ended_since, seed_open
from aistats_hooks.sandbox.state import STATUS_GROUPS
from tests.helpers import run_worker, wait_for
from workers import context

API_KEY = "sk_sandbox_list"


class ManualClock(SimClock):
    def __init__(self, start: float) -> None:
        super().__init__(1.0, start=start)
        self.at = start

    def now(self) -> float:
        return self.at


@pytest.fixture
def clock():
    return ManualClock(1_790_000_000.0)


@pytest.fixture
def sandbox(clock):
    with SandboxServer(API_KEY, seed=4, poll_seconds=300, fast_poll_seconds=120, clock=clock) as srv:
        yield srv


@pytest.fixture
def http(sandbox):
    with httpx.Client(base_url=sandbox.base_url, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        yield client


def create(http, duration: float = 1000, outcome: str = "completed") -> str:
    body = {"prompts": ["a", "b"], "metadata": {"sandbox_outcome": outcome, "sandbox_duration_s": str(duration)}}
    return http.post("/batches", json=body).json()["id"]


def listed(http, **params) -> list[str]:
    return [b["id"] for b in http.get("/batches", params={"limit": 100, **params}).json()["data"]]


def test_filter_names_are_the_gateways_and_unknown_names_only_list_everything(http, sandbox, clock):
    done = create(http, duration=10)
    clock.at += 700  # the first ends; then one validating, one running
    sandbox.gateway.tick()
    validating = create(http, duration=10_000)
    running = create(http, duration=10_000)
    clock.at += 600
    sandbox.gateway.tick()
    assert http.get(f"/batches/{validating}").json()["status"] == "in_progress"
    validating = create(http, duration=10_000)
    everything = set(listed(http))
    assert everything == {done, validating, running} | set(listed(http, statuses="in_progress"))
    assert set(listed(http, statuses="validating")) == everything  # not a name: no filter at all
    assert set(listed(http, statuses="bogus,nothing")) == everything
    assert listed(http, statuses="validating,completed") == [done]  # the unknown name is dropped
    assert listed(http, status="pending") == [validating]  # pending covers pending, queued, validating
    assert validating not in listed(http, statuses="in_progress") and running in listed(http, statuses="running")


def test_without_a_limit_the_list_has_one_item(http):
    for _ in range(3):
        create(http)
    assert len(http.get("/batches").json()["data"]) == 1
    assert len(http.get("/batches", params={"limit": "many"}).json()["data"]) == 3  # NaN: the default 20
    assert len(http.get("/batches", params={"limit": 2}).json()["data"]) == 2


def test_a_retrieve_and_the_gateways_pass_move_a_batch_to_the_top(http, sandbox, clock):
    first = create(http, duration=10**6)
    clock.at += 1
    second = create(http, duration=10**6)
    assert listed(http)[:2] == [second, first]
    clock.at += 1
    assert http.get(f"/batches/{first}").status_code == 200
    assert listed(http)[:2] == [first, second]  # retrieve saved the record: updated_at moved
    clock.at += 1
    assert http.get(f"/batches/{second}").status_code == 200
    assert listed(http)[:2] == [second, first]
    # The gateway's pass over open batches (every 5 minutes while in progress) moves them too.
    created = sandbox.gateway.batch(first).plan.created
    clock.at = created + 100
    sandbox.gateway.tick()  # both run now
    clock.at = created + 300  # first's pass; second's comes a second later
    assert listed(http)[:1] == [first]
    before = http.get("/batches", params={"limit": 1}).json()["data"][0]["updated_at"]
    clock.at += 300
    assert http.get("/batches", params={"limit": 1}).json()["data"][0]["updated_at"] > before


def test_discoverys_views_use_the_gateways_filter_names():
    for statuses, _ in discovery.VIEWS.values():
        assert all(name in STATUS_GROUPS for name in statuses.split(",")), statuses
    groups = set()
    for name in discovery.VIEWS["ended"][0].split(","):
        groups.update(STATUS_GROUPS[name])
    assert {"completed", "failed", "cancelled", "expired"} <= groups
    active = {s for name in discovery.VIEWS["active"][0].split(",") for s in STATUS_GROUPS[name]}
    assert {"validating", "pending", "in_progress", "finalizing", "cancelling"} <= active


@pytest.fixture
def busy_sandbox():
    """Real time; the gateway passes over open batches every second, so the order keeps moving."""
    with SandboxServer(API_KEY, speed=1, seed=8, poll_seconds=1, fast_poll_seconds=1) as srv:
        yield srv


def test_every_ending_is_found_while_retrieves_and_passes_reorder_the_list(settings, busy_sandbox, monkeypatch):
    for name, value in {
        "REDIS_URL": settings.redis_url, "AISTATS_API_KEY": API_KEY, "AISTATS_BASE_URL": busy_sandbox.base_url,
        "AISTATS_KEY_PREFIX": settings.key_prefix, "AISTATS_QUEUE": settings.queue_name,
        "AISTATS_WEBHOOK_SECRET": "whsec_test_secret", "AISTATS_DEBOUNCE_MS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    context.current.cache_clear()
    ctx, gateway = context.current(), busy_sandbox.gateway
    try:
        long = seed_open(gateway, 150, lead_s=3600, spread_s=60, seed=3)
        for item in long:
            ctx.store.save({"id": item["id"], "status": "in_progress", "request_counts": {"total": item["total"]},
                            "billing": None})
        discovery.poll(ctx.store, ctx.client, force=True)  # the watermark
        started, found = time.time(), set()
        for wave in range(2):
            ending = seed_open(gateway, 40, lead_s=0.5, spread_s=0.5, seed=10 + wave)
            for item in ending:
                ctx.store.save({"id": item["id"], "status": "in_progress",
                                "request_counts": {"total": item["total"]}, "billing": None})
            wanted = {item["id"] for item in ending}
            wait_for(lambda: wanted <= {e["id"] for e in ended_since(gateway, started - 5)}, timeout=10)
            for item in long[:60]:  # our own retrieves of open batches move them to the top
                ctx.client.retrieve_batch(item["id"])
            counts = discovery.poll(ctx.store, ctx.client, force=True)
            assert counts["changed"] == 40 and not counts["overflow"], counts
            run_worker(ctx.store)  # retrieving each ended batch moves it to the top of "ended" again
            found |= wanted
        ended = {e["id"]: e["status"] for e in ended_since(gateway, started - 5)}
        assert set(ended) == found
        assert {i: ctx.store.get(i)["status"] for i in ended} == ended
        # The first wave's echoes were listed again in the second poll, but not reconciled again.
        assert set(gateway.stats.snapshot()["retrieve_calls"]["by_batch"][i] for i in ended) == {1}
    finally:
        context.current.cache_clear()
