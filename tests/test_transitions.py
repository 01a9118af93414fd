"""The transitions a reconcile announces: once per change, never twice, never from a payload."""

from __future__ import annotations

import copy

import pytest

from aistats_hooks.rules.transitions import Transition as T, transitions


def rec(status="pending", done=0, billing=None, source="retrieve", announced=None):
    record = {"id": "b1", "status": status, "source": source,
              "request_counts": {"total": 10, "completed": done, "failed": 0}, "billing": billing}
    if announced is not None:
        record["announced"] = announced
    return record


SETTLED = {"state": "settled", "total_nanos": 20250}


def announce(record):
    """Apply transitions() as the reconcile does: store the new announced state."""
    out, state = transitions(record)
    if state is not None:
        record["announced"] = state
    return out


@pytest.mark.parametrize("record,expected", [
    (rec(), [T.CREATED]),
    (rec("in_progress", 3), [T.CREATED, T.IN_PROGRESS, T.PROGRESS]),
    (rec("completed", 10, SETTLED), [T.CREATED, T.COMPLETED, T.BILLING_SETTLED]),
    (rec("failed", 0, {"state": "void", "total_nanos": 0}), [T.CREATED, T.FAILED]),
    (rec("expired"), [T.CREATED, T.EXPIRED]),
    (rec("cancelled"), [T.CREATED, T.CANCELLED]),
    (rec("not_found"), [T.NOT_FOUND]),
    (rec("pending", source="tracked"), [T.CREATED]),
])
def test_first_sight(record, expected):
    assert transitions(record)[0] == expected


def test_a_lifecycle_announces_each_change_once_in_order():
    record = rec()
    seen = announce(record)
    for status, done, billing in [("pending", 0, None), ("in_progress", 2, None), ("in_progress", 2, None),
                                  ("in_progress", 7, None), ("completed", 10, None), ("completed", 10, None),
                                  ("completed", 10, SETTLED), ("completed", 10, SETTLED)]:
        record.update(status=status, request_counts={"total": 10, "completed": done, "failed": 0}, billing=billing)
        seen += announce(record)
    assert seen == [T.CREATED, T.IN_PROGRESS, T.PROGRESS, T.PROGRESS, T.COMPLETED, T.BILLING_SETTLED]


def test_duplicates_and_replays_announce_nothing():
    record = rec("completed", 10, SETTLED)
    announce(record)
    for _ in range(3):
        assert transitions(copy.deepcopy(record)) == ([], None)


def test_a_changed_settled_amount_is_announced_again():
    record = rec("completed", 10, SETTLED)
    announce(record)
    record["billing"] = {"state": "settled", "total_nanos": 30000}
    assert announce(record) == [T.BILLING_SETTLED]


def test_a_payload_is_not_announced_until_retrieve_confirms_it():
    record = rec("in_progress", 2)
    announce(record)
    record.update(status="completed", source="webhook_payload", billing=SETTLED)
    assert transitions(record) == ([], None)
    record["source"] = "retrieve"
    assert announce(record) == [T.COMPLETED, T.BILLING_SETTLED]


def test_terminal_is_final_for_announcements_too():
    record = rec("completed", 10)
    announce(record)
    record["status"] = "failed"  # the merge rules never do this; announcements must not either
    assert announce(record) == []
    assert record["announced"]["status"] == "completed"
