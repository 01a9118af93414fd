"""Change-driven discovery from the gateway's list (aistats_hooks/discovery.py) and the sweep's backstop allowance.

Real Redis, real RQ worker, the sandbox; the adaptive rules are pure and tested as such.
"""

from __future__ import annotations

import time

import httpx
import pytest

from aistats_hooks import discovery
from aistats_hooks.discovery import PAGE, TARGET_NEW, ViewState, next_state
from aistats_hooks.sandbox import SandboxServer
from aistats_hooks.sandbox.population import ended_since, seed_open
from tests.helpers import run_worker, wait_for
from workers import context
from workers.discovery_job import discover
from workers.jobs import sweep

API_KEY = "sk_sandbox_discovery"
TERMINAL = {"completed", "failed", "cancelled", "expired"}


@pytest.fixture
def sandbox():
    with SandboxServer(API_KEY, speed=3600, seed=5, poll_seconds=0, fast_poll_seconds=0) as srv:
        yield srv


@pytest.fixture
def real_time_sandbox():
    with SandboxServer(API_KEY, speed=1, seed=6, poll_seconds=0, fast_poll_seconds=0) as srv:
        yield srv


def _ctx(settings, sandbox, monkeypatch, **extra):
    for name, value in {
        "REDIS_URL": settings.redis_url, "AISTATS_API_KEY": API_KEY, "AISTATS_BASE_URL": sandbox.base_url,
        "AISTATS_KEY_PREFIX": settings.key_prefix, "AISTATS_QUEUE": settings.queue_name,
        "AISTATS_WEBHOOK_SECRET": "whsec_test_secret", "AISTATS_DEBOUNCE_MS": "0", **extra,
    }.items():
        monkeypatch.setenv(name, value)
    context.current.cache_clear()
    return context.current()


@pytest.fixture
def ctx(settings, sandbox, monkeypatch):
    yield _ctx(settings, sandbox, monkeypatch)
    context.current.cache_clear()


def _items(n: int, start: float, step: float = 0.001, prefix: str = "b") -> list[dict]:
    """List items newest first, as the gateway orders them."""
    times = [start + i * step for i in range(n)]
    return [{"id": f"{prefix}{i}", "updated_at": t} for i, t in reversed(list(enumerate(times)))]


# -- the adaptive rules (pure) ----------------------------------------------------------------------


def test_items_at_the_watermark_seen_before_are_not_new():
    first, new, _ = next_state(ViewState(), _items(3, 1000.0), 2000.0, adaptive=True, longest=60)
    assert new == 3 and first.newest == pytest.approx(1000.002) and first.at_newest == ("b2",)
    # The same page again, plus one item at exactly the watermark and one newer.
    page = [{"id": "c", "updated_at": 1000.003}, {"id": "tie", "updated_at": 1000.002}] + _items(3, 1000.0)
    _, new, overflow = next_state(first, page, 2010.0, adaptive=True, longest=60)
    assert new == 2 and not overflow


def test_the_gap_shrinks_as_endings_speed_up_and_grows_back_slowly():
    state, _, _ = next_state(ViewState(), _items(10, 0.0), 100.0, adaptive=True, longest=60)
    assert state.due == pytest.approx(100.0 + discovery.FIRST_GAP)
    # 50 new in 5 s: 10 a second, so TARGET_NEW arrive in 7.5 s.
    fast, new, _ = next_state(state, _items(50, 50.0, prefix="f"), 105.0, adaptive=True, longest=60)
    assert new == 50 and fast.rate == pytest.approx(10.0) and fast.due - 105.0 == pytest.approx(TARGET_NEW / 10)
    # Nothing new: the rate halves (smoothed), it does not drop to zero at once.
    calm, _, _ = next_state(fast, [], 110.0, adaptive=True, longest=60)
    assert calm.rate == pytest.approx(5.0) and calm.due - 110.0 == pytest.approx(TARGET_NEW / 5)
    # Quiet for long: capped at the longest gap; a fixed view always waits the longest gap.
    quiet = ViewState(polled_at=100.0, rate=0.0001)
    assert next_state(quiet, [], 200.0, adaptive=True, longest=60)[0].due == pytest.approx(260.0)
    assert next_state(fast, _items(90, 60.0), 106.0, adaptive=False, longest=60)[0].due == pytest.approx(166.0)


def test_a_page_of_only_new_items_is_an_overflow_and_polls_again_soon():
    state = ViewState(newest=10.0, polled_at=100.0, rate=1.0, due=175.0)
    after, new, overflow = next_state(state, _items(PAGE, 20.0), 110.0, adaptive=True, longest=60)
    assert overflow and new == PAGE
    assert after.due == pytest.approx(110.0 + discovery.MIN_GAP) and after.rate == pytest.approx(2 * PAGE / 10)
    # One item already seen on the page: nothing can have been lost.
    page = _items(PAGE - 1, 20.0) + [{"id": "old", "updated_at": 10.0}]
    assert not next_state(ViewState(newest=10.0, at_newest=("old",), polled_at=100.0), page, 110.0,
                          adaptive=True, longest=60)[2]


def test_a_stored_state_that_cannot_be_read_starts_afresh():
    assert ViewState.loads(b"{not json") == ViewState()
    assert ViewState.loads(ViewState(1.5, ("a",), 2.0, 3.0, 4.0).dumps()) == ViewState(1.5, ("a",), 2.0, 3.0, 4.0)


# -- against the sandbox --------------------------------------------------------------------------


def test_batches_we_never_heard_of_are_discovered_and_reconciled(ctx, sandbox):
    with httpx.Client(base_url=sandbox.base_url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        ids = [http.post("/batches", json={"prompts": ["a"]}).json()["id"] for _ in range(3)]
    wait_for(lambda: all(sandbox.gateway.truth(i)["status"] in TERMINAL for i in ids))
    counts = discover()
    assert counts["discovered"] == 3 and counts["queued"] == 3 and counts["polls"] == len(discovery.VIEWS)
    run_worker(ctx.store)
    assert all(ctx.store.get(i)["status"] == sandbox.gateway.truth(i)["status"] for i in ids)
    # Known and final now: a forced poll lists them but queues nothing, and costs only the list calls.
    sandbox.gateway.stats.reset()
    again = discovery.poll(ctx.store, ctx.client, force=True)
    assert again["listed"] == 3 and again["queued"] == 0 and again["discovered"] == 0
    assert sandbox.gateway.stats.get("retrieve_calls", "total") == 0
    assert sandbox.gateway.stats.get("list_calls") == len(discovery.VIEWS)
    assert ctx.store.counters("discovery")["discovered"] == 3


def test_a_view_not_due_is_not_polled(ctx, sandbox):
    discover()
    sandbox.gateway.stats.reset()
    assert discover()["polls"] == 0  # ended waits FIRST_GAP, active the longest gap
    assert sandbox.gateway.stats.get("list_calls") == 0
    states = {k.decode(): ViewState.loads(v) for k, v in ctx.store.redis.hgetall(ctx.store.keys.discovery).items()}
    assert set(states) == set(discovery.VIEWS)
    assert states["active"].due - states["active"].polled_at == pytest.approx(ctx.settings.discovery_interval)


def test_a_second_process_does_not_poll_while_one_holds_the_lock(ctx, sandbox):
    ctx.store.redis.set(ctx.store.keys.discovery_lock, "someone", px=10_000)
    assert discover()["polls"] == 0 and sandbox.gateway.stats.get("list_calls") == 0


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


def test_open_batches_that_end_are_found_and_the_others_are_not_retrieved(settings, real_time_sandbox, monkeypatch):
    ctx = _ctx(settings, real_time_sandbox, monkeypatch)
    gateway = real_time_sandbox.gateway
    seeded = seed_open(gateway, 60, lead_s=1.0, spread_s=0.5, seed=1) + seed_open(gateway, 200, lead_s=3600,
                                                                                   spread_s=60, seed=2)
    for item in seeded:
        ctx.store.save({"id": item["id"], "status": "in_progress", "request_counts": {"total": item["total"]},
                        "billing": None})
    discovery.poll(ctx.store, ctx.client, force=True)  # before any end: the watermark
    started = time.time()
    wait_for(lambda: len(ended_since(gateway, 0)) == 60, timeout=10)
    gateway.stats.reset()
    counts = discovery.poll(ctx.store, ctx.client, force=True)
    assert counts["changed"] == 60 and counts["queued"] == 60 and not counts["overflow"]
    run_worker(ctx.store)
    ended = {e["id"]: e["status"] for e in ended_since(gateway, started - 5)}
    assert {i: ctx.store.get(i)["status"] for i in ended} == ended
    # One retrieve per ended batch, none for the 200 still running.
    by_batch = gateway.stats.snapshot()["retrieve_calls"]["by_batch"]
    assert set(by_batch) == set(ended) and set(by_batch.values()) == {1}
    context.current.cache_clear()


def test_more_endings_than_a_page_are_read_group_by_group(settings, real_time_sandbox, monkeypatch):
    ctx = _ctx(settings, real_time_sandbox, monkeypatch)
    gateway = real_time_sandbox.gateway
    seed_open(gateway, 140, lead_s=1.0, spread_s=0.5, seed=3)
    discovery.poll(ctx.store, ctx.client, force=True)
    wait_for(lambda: len(ended_since(gateway, 0)) == 140, timeout=10)
    gateway.stats.reset()
    counts = discovery.poll(ctx.store, ctx.client, force=True)
    assert counts["overflow"] == 1
    # The combined page, four group pages, and the active view.
    assert counts["polls"] == gateway.stats.get("list_calls") == 1 + len(discovery.ENDED_GROUPS) + 1
    by_status: dict[str, int] = {}
    for e in ended_since(gateway, 0):
        by_status[e["status"]] = by_status.get(e["status"], 0) + 1
    reachable = sum(min(n, PAGE) for n in by_status.values())
    assert counts["discovered"] == reachable > PAGE  # more than one page could show
    context.current.cache_clear()


def test_a_refused_list_waits_the_longest_gap(settings, sandbox, monkeypatch):
    ctx = _ctx(settings, sandbox, monkeypatch, AISTATS_API_KEY="sk_wrong_key_123")
    counts = discover()
    assert counts["errors"] == len(discovery.VIEWS) and counts["polls"] == 0
    states = [ViewState.loads(v) for v in ctx.store.redis.hgetall(ctx.store.keys.discovery).values()]
    assert all(s.due - time.time() > ctx.settings.discovery_interval - 5 for s in states)
    context.current.cache_clear()


def test_the_sweep_backstop_stays_within_its_hourly_allowance(settings, sandbox, monkeypatch):
    ctx = _ctx(settings, sandbox, monkeypatch, AISTATS_SWEEP_MAX_PER_HOUR="120", AISTATS_STALE_AFTER="60")
    ids = [f"batch_open_{i}" for i in range(30)]
    for batch_id in ids:
        ctx.store.save({"id": batch_id, "status": "in_progress", "request_counts": {}, "billing": None})
    ctx.store.redis.zadd(ctx.store.keys.open, {b: time.time() - 3600 for b in ids})
    # Five minutes' worth (10 at 120 an hour) at once, then nothing until the bucket refills.
    assert sweep() == 10
    assert sweep() == 0
    assert ctx.store.counters("sweep")["queued"] == 10
    context.current.cache_clear()
    ctx = _ctx(settings, sandbox, monkeypatch, AISTATS_SWEEP_MAX_PER_HOUR="0", AISTATS_STALE_AFTER="60")
    assert sweep() == 20  # no cap: every due batch not already queued
    context.current.cache_clear()


def test_discovered_batches_are_reported_in_metrics(ctx, sandbox, settings):
    with httpx.Client(base_url=sandbox.base_url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        http.post("/batches", json={"prompts": ["a"]}).raise_for_status()
    wait_for(lambda: discovery.poll(ctx.store, ctx.client, force=True)["discovered"] >= 1)
    from aistats_hooks.web import create_app

    app = create_app(settings)
    text = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {settings.query_api_token}"}).text
    assert 'aistats_discovery_batches_total{kind="discovered"} 1.0' in text
    assert 'aistats_discovery_polls_total{outcome="ok"}' in text
