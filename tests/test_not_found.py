"""A 404 is believed after misses spread over minutes, never after a burst of deliveries.

The rule (aistats_hooks/rules/not_found.py) with a clock the tests move; then the
whole path: the receiver, a real RQ worker and a gateway answering 404 over
real HTTP (tests/upstream.py).
"""

from __future__ import annotations

import pytest

from aistats_hooks import reconcile
from aistats_hooks.rules import not_found
from aistats_hooks.rules.not_found import count_miss
from aistats_hooks.reconcile import NotFoundYet, Outcome
from aistats_hooks.sdk import AIStats
from aistats_hooks.web import create_app
from tests.helpers import make_event, run_worker, signed

T0 = 1_800_000_000.0


def walk(times, spacing=not_found.SPACING):
    """Feed 404s seen at ``times`` through the rule as reconcile stores them; return the verdicts."""
    misses, checked_at, out = 0, None, []
    for now in times:
        miss = count_miss(misses, checked_at, now, spacing)
        misses, checked_at = miss.misses, miss.checked_at
        out.append(miss)
    return out


def test_the_first_miss_counts_and_asks_for_the_next_check_a_minute_later():
    miss = count_miss(0, None, T0)
    assert (miss.misses, miss.checked_at, miss.counted, miss.believed, miss.retry_in) == (1, T0, True, False, 60)


def test_a_burst_of_misses_counts_once_however_long_it_lasts():
    verdicts = walk([T0 + 2.5 * i for i in range(20)])  # every 2.5 s for 50 s
    assert not any(v.believed for v in verdicts)
    assert [v.counted for v in verdicts] == [True] + [False] * 19
    assert verdicts[-1].misses == 1 and verdicts[-1].retry_in == pytest.approx(60 - 47.5)


def test_three_misses_over_five_minutes_are_believed():
    verdicts = walk([T0, T0 + 60, T0 + 300])
    assert [v.misses for v in verdicts] == [1, 2, 3]
    assert [v.believed for v in verdicts] == [False, False, True]
    assert verdicts[1].retry_in == 240 and verdicts[2].retry_in == 0


def test_misses_closer_than_their_spacing_are_not_believed():
    # Three misses, but the last two only 239 s apart: not yet.
    verdicts = walk([T0, T0 + 60, T0 + 299])
    assert [v.counted for v in verdicts] == [True, True, False]
    assert not verdicts[-1].believed and verdicts[-1].retry_in == pytest.approx(1)
    # Many runs, many listings within the five minutes change nothing.
    times = [T0 + s for s in range(0, 300, 5)]
    assert not any(v.believed for v in walk(times))
    assert walk(times + [T0 + 300])[-1].believed


def test_the_spacing_is_a_parameter_of_the_rule():
    assert walk([T0, T0 + 1, T0 + 2], spacing=(1, 1))[-1].believed
    assert [v.believed for v in walk([T0, T0 + 1], spacing=(1,))] == [False, True]
    assert not_found.attempts((1, 1, 1)) == 4 and reconcile.NOT_FOUND_ATTEMPTS == 3


@pytest.mark.parametrize("misses, checked_at", [(2, None), (2, "yesterday"), (2, float("nan")), (True, T0),
                                                  ("3", T0), (-4, T0), (2, T0 + 10**6)])
def test_undatable_or_odd_bookkeeping_starts_the_count_again(misses, checked_at):
    miss = count_miss(misses, checked_at, T0)
    assert (miss.misses, miss.checked_at, miss.counted, miss.believed) == (1, T0, True, False)


def test_a_clock_behind_the_last_miss_does_not_count():
    miss = count_miss(1, T0 + 30, T0)  # another worker's clock ran ahead by 30 s
    assert not miss.counted and miss.misses == 1 and miss.retry_in == pytest.approx(90)


# -- through the worker ---------------------------------------------------------------------------------------


@pytest.fixture
def app(settings, worker_env):
    return create_app(settings)


@pytest.fixture
def store(app):
    return app.extensions["aistats"]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock(T0)
    monkeypatch.setattr(reconcile, "clock", fake)
    return fake


def deliver(app, batch_id, n):
    # Terminal deliveries: each one asks the gateway (created/progress ones only start a provisional record).
    event = make_event(batch_id, "batch.completed", key=f"batch.completed:{n}", status="completed")
    body, headers = signed(event)
    return app.test_client().post("/webhooks/aistats", data=body, headers=headers)


def announced(store):
    return [fields[b"transition"].decode() for _id, fields in store.redis.xrange(store.keys.changes)]


def test_four_quick_deliveries_of_an_unknown_batch_do_not_make_it_not_found(app, store, upstream, clock):
    upstream.answer("ghost", (404, {"error": {"message": "No such batch"}}))
    for n in range(4):  # four deliveries 2.5 s apart, each reconciled by a real worker at once
        assert deliver(app, "ghost", n).status_code == 202
        run_worker(store)
        clock.now += 2.5
    assert upstream.calls["ghost"] == 4
    record = store.get("ghost")
    assert record["status"] != "not_found" and "not_found" not in record
    assert record["not_found_misses"] == 1 and record["not_found_checked_at"] == T0
    assert announced(store) == []
    assert "ghost" in store.due_for_sweep("+inf") and store.redis.zscore(store.keys.unknown, "ghost") is None
    # Each run asked RQ for a later check rather than failing or believing the 404s.
    assert store.queue.scheduled_job_registry.count == 4 and store.queue.failed_job_registry.count == 0


def test_misses_spread_over_five_minutes_make_it_not_found_once(app, store, upstream, clock, settings):
    upstream.answer("ghost", (404, {"error": {"message": "No such batch"}}))
    sdk = AIStats(settings.api_key, upstream.base_url, timeout=5)
    try:
        outcomes = []
        for step in (0, 30, 30, 180, 59, 1, 0):  # seconds since the previous run: 0, 30, 60, 240, 299, 300, 300
            clock.now += step
            try:
                outcomes.append(reconcile.reconcile_batch(store, sdk, "ghost"))
            except NotFoundYet as exc:
                outcomes.append(exc.misses)
                assert announced(store) == []
    finally:
        sdk.close()
    assert outcomes == [1, 1, 2, 2, 2, Outcome.NOT_FOUND, Outcome.NOT_FOUND]
    assert store.get("ghost")["status"] == "not_found"
    assert announced(store) == ["batch.not_found"]  # announced once, however often it is confirmed
    assert not store.redis.exists(store.keys.lock("ghost"))


def test_a_batch_found_after_misses_forgets_them(app, store, upstream, clock, settings):
    upstream.answer("late", (404, {"error": {"message": "No such batch"}}), (200, make_event("late")["data"]))
    sdk = AIStats(settings.api_key, upstream.base_url, timeout=5)
    try:
        with pytest.raises(NotFoundYet):
            reconcile.reconcile_batch(store, sdk, "late")
        assert reconcile.reconcile_batch(store, sdk, "late") == Outcome.RECONCILED
    finally:
        sdk.close()
    record = store.get("late")
    assert record["status"] == "completed"
    assert not {"not_found", "not_found_misses", "not_found_checked_at"} & set(record)
