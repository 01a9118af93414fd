"""The pure merge rules (merge.py), status folding and time parsing."""

from __future__ import annotations

import pytest

from aistats_hooks.rules.billing import contribution, nanos_to_usd
from aistats_hooks.rules.merge import is_final, merge
from aistats_hooks.rules.status import BatchStatus, Source, normalize_status
from aistats_hooks.rules.timestamps import parse_time
from tests.helpers import fixture_event


def batch(status="in_progress", updated="2026-06-17T15:59:30.000Z", completed=1, total=2, **extra):
    obj = fixture_event()["data"]
    obj.update(status=status, lifecycle_status=None, updated_at=updated,
               request_counts={"total": total, "completed": completed, "failed": 0})
    if status != "completed":
        obj["billing"] = dict(obj["billing"], state="pending", total_nanos=0)
    obj.update(extra)
    return obj


@pytest.mark.parametrize("raw,expected", [
    ("completed", "completed"), ("canceled", "cancelled"), ("cancelled", "cancelled"),
    ("expired", "expired"), ("failed", "failed"), ("finalizing", "in_progress"),
    ("cancelling", "in_progress"), ("processing", "in_progress"), ("validating", "pending"),
    ("queued", "pending"), ("something_new", "pending"), (None, "pending"),
])
def test_normalize_status(raw, expected):
    assert normalize_status(raw) == BatchStatus(expected)


def test_lifecycle_status_used_when_status_missing():
    assert normalize_status(None, "running") == BatchStatus.IN_PROGRESS


@pytest.mark.parametrize("value,expected", [
    ("2026-06-17T16:00:00.000Z", 1781712000.0), (1781712000, 1781712000.0),
    (1781712000000, 1781712000.0), ("1781712000", 1781712000.0), ("garbage", None), (None, None), (True, None),
])
def test_parse_time_accepts_both_forms(value, expected):
    assert parse_time(value) == expected


def test_terminal_state_is_final():
    done = merge(None, batch("completed", "2026-06-17T16:00:00.000Z", completed=2))
    later = merge(done, batch("in_progress", "2026-06-17T16:05:00.000Z", completed=1))
    assert later["status"] == "completed"
    assert later["billing"]["state"] == "settled"
    other = merge(done, batch("failed", "2026-06-17T16:06:00.000Z"))
    assert other["status"] == "completed"


def test_out_of_order_terminal_wins():
    progress = merge(None, batch("in_progress", "2026-06-17T16:01:00.000Z"))
    # The terminal snapshot carries an older timestamp than the progress one.
    done = merge(progress, batch("completed", "2026-06-17T16:00:00.000Z", completed=2))
    assert done["status"] == "completed"
    assert done["billing"]["total_nanos"] == 20250


def test_request_counts_never_go_down():
    first = merge(None, batch(completed=5, total=10))
    second = merge(first, batch(completed=3, total=10, updated="2026-06-17T15:59:40.000Z"))
    assert second["request_counts"]["completed"] == 5


def test_older_snapshot_never_overwrites_newer():
    newer = merge(None, batch(updated="2026-06-17T15:59:50.000Z", metadata={"v": "new"}))
    merged = merge(newer, batch(status="pending", updated="2026-06-17T15:59:10.000Z", metadata={"v": "old"}))
    assert merged["status"] == "in_progress"
    assert merged["metadata"] == {"v": "new"}
    assert merged["updated_at"] == "2026-06-17T15:59:50.000Z"


def test_applying_the_same_object_twice_changes_nothing():
    obj = batch("completed", "2026-06-17T16:00:00.000Z", completed=2)
    once = merge(None, obj)
    assert merge(once, obj) == once
    progress = batch()
    assert merge(merge(None, progress), progress) == merge(None, progress)


def test_billing_settles_after_terminal():
    unsettled = batch("completed", "2026-06-17T16:00:00.000Z", completed=2)
    unsettled["billing"] = dict(unsettled["billing"], state="pending", total_nanos=0)
    first = merge(None, unsettled)
    assert not is_final(first)
    settled = merge(first, batch("completed", "2026-06-17T16:00:05.000Z", completed=2))
    assert settled["billing"]["state"] == "settled" and is_final(settled)


def test_payload_fallback_is_marked_and_not_final():
    record = merge(None, batch("completed", completed=2), source=Source.WEBHOOK_PAYLOAD)
    assert record["source"] == "webhook_payload"
    assert not is_final(record)
    confirmed = merge(record, batch("completed", completed=2))
    assert confirmed["source"] == "retrieve" and is_final(confirmed)


def test_contribution_only_for_settled():
    done = merge(None, batch("completed", "2026-06-17T16:00:00.000Z", completed=2))
    assert contribution(done)[0] == 20250
    assert contribution(done)[1] == {"day": "2026-06-17", "session_id": "agent-run-42",
                                     "model": "openai/gpt-5-mini", "provider": "openai"}
    void = merge(None, batch("failed", billing={"state": "void", "total_nanos": 999}))
    assert contribution(void)[0] == 0


def test_unknown_and_missing_fields_are_tolerated():
    record = merge(None, {"id": "b1", "status": "queued", "request_counts": "nonsense", "billing": [], "extra": 1})
    assert record["status"] == "pending"
    assert record["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert record["billing"] is None


def test_openai_style_unix_timestamps():
    obj = {"id": "b2", "status": "completed", "created_at": 1781711000, "completed_at": 1781712000,
           "request_counts": {"total": 1, "completed": 1, "failed": 0}}
    record = merge(None, obj)
    assert record["finalized_at"] == "2026-06-17T16:00:00.000Z"
    assert record["created_at"].startswith("2026-06-17T15:43:20")


@pytest.mark.parametrize("nanos,usd", [(0, "0.000000000"), (20250, "0.000020250"), (1_500_000_000, "1.500000000"),
                                       (-5, "-0.000000005")])
def test_nanos_to_usd_is_exact(nanos, usd):
    assert nanos_to_usd(nanos) == usd


def test_unicode_digits_are_not_numbers():
    # "²".isdigit() is true, yet int() and float() refuse it.
    assert parse_time("²") is None
    assert merge(None, {"id": "b", "request_counts": {"total": "²"}})["request_counts"]["total"] == 0
