"""The one billing rule, over both shapes the gateway sends and the SDK's published type."""

from __future__ import annotations

import pytest

from aistats_hooks.rules.billing import InvalidAmount, contribution, is_settled_or_void, normalize_billing

RETRIEVE_FINAL = {"billed": True, "charged": True, "reason": "charged", "cost_nanos": 20250, "cost_usd": 2.025e-05,
                  "finalized_at": "2026-06-17T16:00:59.500Z", "pricing_breakdown": {"lines": 2}}


@pytest.mark.parametrize("raw,state,nanos", [
    # Retrieve's shape: no `state`; `billed` says finalised.
    (RETRIEVE_FINAL, "settled", 20250),
    ({**RETRIEVE_FINAL, "charged": False, "reason": "already_billed"}, "settled", 20250),
    ({**RETRIEVE_FINAL, "charged": False, "reason": "failed", "cost_nanos": 0, "cost_usd": 0}, "void", 0),
    ({**RETRIEVE_FINAL, "charged": False, "reason": "expired", "cost_nanos": None}, "void", 0),
    ({**RETRIEVE_FINAL, "charged": True, "cost_nanos": 0}, "settled", 0),
    ({**RETRIEVE_FINAL, "billed": False, "charged": False, "reason": "settlement_failed"}, "pending", 0),
    ({"billed": False, "charged": False, "reason": "non_terminal_status", "cost_nanos": None}, "pending", 0),
    # The webhook payload's shape: `state` and `total_nanos` (null until settled).
    ({"currency": "usd", "state": "settled", "billable": True, "total_nanos": 20250}, "settled", 20250),
    ({"currency": "usd", "state": "estimated", "total_nanos": None, "estimated_nanos": 30000}, "estimated", 0),
    ({"currency": "usd", "state": "void", "total_nanos": 999}, "void", 0),
    ({"state": "SETTLED", "total_nanos": "20250"}, "settled", 20250),
    ({"state": "something_new", "total_nanos": 5}, "pending", 0),
    # The SDK's BatchBillingSummary may carry both: `state` decides, the amount is total_nanos, else cost_nanos.
    ({"state": "settled", "total_nanos": None, "cost_nanos": 777, "billed": True}, "settled", 777),
    ({"state": "settled", "total_nanos": 20250, "cost_nanos": 1}, "settled", 20250),
])
def test_one_rule_for_settled_and_void(raw, state, nanos):
    billing = normalize_billing(raw)
    assert billing["state"] == state and billing["total_nanos"] == nanos
    assert is_settled_or_void(billing) is (state in ("settled", "void"))
    record = {"billing": billing, "finalized_at": "2026-06-17T16:00:55.000Z"}
    assert contribution(record)[0] == (nanos if state == "settled" else 0)


def test_retrieve_finalized_at_dates_the_cost():
    billing = normalize_billing({**RETRIEVE_FINAL, "finalized_at": "2026-06-18T00:00:01Z"})
    assert billing["billed_at"] == "2026-06-18T00:00:01Z" and billing["charge_reason"] == "charged"
    assert contribution({"billing": billing, "finalized_at": "2026-06-17T23:59:59Z"})[1]["day"] == "2026-06-18"


@pytest.mark.parametrize("raw", [None, [], "settled", 5])
def test_no_billing_is_none(raw):
    assert normalize_billing(raw) is None


@pytest.mark.parametrize("amount", [-5, True, "²", "1e3", float("inf"), float("nan"), "12.5", 1.5,
                                    "99999999999999999999", 10**15 + 1, 2**63, [], {}])
def test_amounts_that_are_not_whole_nanos_in_range_are_refused(amount):
    # An amount is never guessed at (it used to count 0, or overflow the ledger).
    with pytest.raises(InvalidAmount):
        normalize_billing({"state": "settled", "total_nanos": amount})


@pytest.mark.parametrize("amount,nanos", [(None, 0), (0, 0), ("20250", 20250), (20250.0, 20250), (10**15, 10**15)])
def test_amounts_in_range_are_read(amount, nanos):
    assert normalize_billing({"state": "settled", "total_nanos": amount, "cost_nanos": None})["total_nanos"] == nanos


def test_already_billed_and_blocked_finalisations_read_right():
    """core/batch-finalization.ts: later finalisations say already_billed; a blocked one billed: false."""
    from aistats_hooks.rules.billing import normalize_billing

    later = normalize_billing({"billed": True, "charged": False, "reason": "already_billed", "cost_nanos": 20250})
    assert (later["state"], later["total_nanos"]) == ("settled", 20250)
    void = normalize_billing({"billed": True, "charged": False, "reason": "already_billed", "cost_nanos": 0})
    assert (void["state"], void["total_nanos"]) == ("void", 0)
    blocked = normalize_billing({"billed": False, "charged": False, "reason": "missing_output_file", "cost_nanos": None})
    assert (blocked["state"], blocked["total_nanos"]) == ("pending", 0)
    partial = normalize_billing({"state": "settled", "total_nanos": 6075, "charge_reason": "charged_partial_success",
                                 "charged": True})
    assert (partial["state"], partial["total_nanos"]) == ("settled", 6075)
