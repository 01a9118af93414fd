"""The chaos harness's own bookkeeping (no processes: ``make chaos-quick`` runs the real thing)."""

from __future__ import annotations

import json

from bench.chaos.__main__ import parse_args
from bench.chaos.record import Record, reason_of
from bench.chaos.verify import REQUIRED_FAULTS, billing_equal, status_equal


def test_sizes_and_rates():
    quick, full = parse_args(["--quick"]), parse_args(["--rate", "drop=0.5"])
    assert (quick.batches, quick.window) == (300, 70.0)
    assert (full.batches, full.rates["drop"]) == (2000, 0.5)
    assert quick.workers >= 2 and quick.tolerance < 300


def test_a_hostile_2xx_is_a_forged_acceptance_and_a_second_202_a_dedupe_failure():
    record = Record()
    record.answer(401, b'{"error":"invalid_signature","reason":"mismatch"}', hostile="tampered_body")
    record.answer(202, b"{}", hostile="wrong_secret")
    record.answer(202, b"{}", event_id="evt_1", batch_id="b1")
    record.answer(200, b"{}", event_id="evt_1", batch_id="b1")
    record.answer(202, b"{}", event_id="evt_1", batch_id="b1")
    record.answer(500, b"{}", hostile="malformed_json")
    assert record.rejected == {"401 mismatch": 1, "500": 1}
    assert len(record.forged_accepted) == 1 and record.acked == {"evt_1": "b1"}
    assert record.accepted_twice["evt_1"] == 2
    assert len(record.server_errors) == 1


def test_reasons_and_comparisons():
    assert reason_of(None, b"") == "unreachable"
    assert reason_of(503, json.dumps({"error": "store_unavailable"}).encode()) == "503 store_unavailable"
    truth = {"status": "canceled", "request_counts": {"total": 2}, "billing": {"state": "void", "total_nanos": 0}}
    ours = {"status": "cancelled", "request_counts": {"total": 2}, "billing": {"state": "void", "total_nanos": 0}}
    assert status_equal(truth, ours) and billing_equal(truth, ours)
    assert not status_equal(truth, None)
    assert len(set(REQUIRED_FAULTS)) == len(REQUIRED_FAULTS) >= 25  # with the signed attacks
