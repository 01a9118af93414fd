"""Reconcile against retrieve objects shaped as the gateway's source builds them.

Retrieve (GET /v1/batches/{id}) is the provider's OpenAI-style object: unix
seconds, no ``updated_at``, statuses such as ``validating`` and ``finalizing``,
and ``billing`` omitted until finalisation, then ``{billed, charged, reason,
cost_nanos, ...}`` with no ``state`` (docs/protocol.md). Each shape goes
through the whole path: a signed delivery to the receiver, a real RQ worker,
a retrieve over real HTTP, then the query API's record and ledger.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.helpers import make_event, run_worker, signed

RETRIEVE = json.loads((Path(__file__).with_name("fixtures") / "batch_retrieve_completed.json").read_text())
T0 = RETRIEVE["created_at"]
_NULL_TIMES = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
               "cancelling_at", "cancelled_at")


def retrieved(batch_id: str, status: str, *, billing: dict | None = None, lifecycle: str | None = None,
              counts: tuple[int, int, int] = (3, 0, 0), **times: int) -> dict:
    """A retrieve object for ``batch_id`` in ``status``, built like the gateway's route builds it."""
    obj = copy.deepcopy(RETRIEVE)
    obj.update(id=batch_id, status=status, lifecycle_status=lifecycle or status, output_file_id=None,
               error_file_id=None, results_url=None, cancel_url=f"https://api.phaseo.app/v1/batches/{batch_id}/cancel")
    obj["metadata"]["phaseo_batch_id"] = batch_id
    obj["request_counts"] = dict(zip(("total", "completed", "failed"), counts))
    for key in _NULL_TIMES:
        obj[key] = times.get(key)
    obj.pop("billing")
    if billing is not None:
        obj["billing"] = billing
    assert "updated_at" not in obj  # the point of these shapes
    return obj


def finalised(cost_nanos: int | None, *, charged: bool, reason: str) -> dict:
    """Retrieve's billing once the gateway finalised the batch."""
    return {"billed": True, "charged": charged, "reason": reason, "cost_nanos": cost_nanos,
            "cost_usd": None if cost_nanos is None else cost_nanos / 1e9,
            "finalized_at": "2026-06-17T16:00:59.500Z", "pricing_breakdown": {"lines": 2}}


SHAPES = {
    "completed": (
        retrieved("b_done", "completed", counts=(3, 3, 0), in_progress_at=T0 + 15, finalizing_at=T0 + 90,
                  completed_at=T0 + 115, billing=finalised(20250, charged=True, reason="charged")),
        "completed", 20250, True),
    "completed_billing_not_final": (
        retrieved("b_unbilled", "completed", counts=(3, 3, 0), completed_at=T0 + 115),
        "completed", 0, False),
    "completed_settlement_failed": (
        retrieved("b_retry", "completed", counts=(3, 3, 0), completed_at=T0 + 115,
                  billing={**finalised(None, charged=False, reason="settlement_failed"), "billed": False}),
        "completed", 0, False),
    "failed": (
        retrieved("b_failed", "failed", counts=(3, 0, 3), failed_at=T0 + 40,
                  billing=finalised(0, charged=False, reason="failed")),
        "failed", 0, True),
    "expired": (
        retrieved("b_expired", "expired", counts=(3, 1, 0), in_progress_at=T0 + 15, expired_at=T0 + 86400,
                  billing=finalised(0, charged=False, reason="expired")),
        "expired", 0, True),
    "cancelled": (
        retrieved("b_cancelled", "cancelled", counts=(3, 0, 0), cancelling_at=T0 + 20, cancelled_at=T0 + 30,
                  billing=finalised(0, charged=False, reason="released_released")),
        "cancelled", 0, True),
    "cancelled_after_partial_work": (
        retrieved("b_partial", "cancelled", counts=(3, 2, 0), cancelling_at=T0 + 20, cancelled_at=T0 + 30,
                  billing=finalised(13500, charged=True, reason="charged")),
        "cancelled", 13500, True),
    "validating": (
        retrieved("b_validating", "validating", lifecycle="pending"),
        "pending", 0, False),
    "finalizing": (
        retrieved("b_finalizing", "finalizing", lifecycle="pending", counts=(3, 3, 0), in_progress_at=T0 + 15,
                  finalizing_at=T0 + 90),
        "in_progress", 0, False),
}


@pytest.fixture
def app(settings, worker_env):
    """The receiver and query app; ``worker_env`` (conftest) is what the worker's job reads."""
    from aistats_hooks.web import create_app

    return create_app(settings)


def _deliver(app, batch_id: str, event_type: str = "batch.completed") -> dict:
    body, headers = signed(make_event(batch_id, event_type))
    resp = app.test_client().post("/webhooks/aistats", data=body, headers=headers)
    assert resp.status_code in (200, 202), resp.json
    return resp.json


def _get(app, settings, path: str) -> dict:
    resp = app.test_client().get(path, headers={"Authorization": f"Bearer {settings.query_api_token}"})
    assert resp.status_code == 200, resp.json
    return resp.json


@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_gateway_retrieve_shape_stores_status_and_ledger(shape, app, settings, store, upstream):
    obj, status, nanos, final = SHAPES[shape]
    batch_id = obj["id"]
    upstream.answer(batch_id, (200, obj))
    _deliver(app, batch_id)
    run_worker(store)
    record = _get(app, settings, f"/batches/{batch_id}")
    assert record["status"] == status and record["source"] == "retrieve"
    assert record["upstream_status"] == obj["status"]
    assert record["billing"] is None or record["billing"]["total_nanos"] == nanos
    assert _get(app, settings, "/billing/summary?group_by=model")["total_nanos"] == nanos
    # A final batch needs no more upstream calls; any other stays open and is retrieved again.
    reply = _deliver(app, batch_id, "batch.failed" if status != "completed" else "batch.cancelled")
    assert (reply["job"] == "final") is final
    run_worker(store)
    assert upstream.calls[batch_id] == (1 if final else 2)
    assert _get(app, settings, "/billing/summary?group_by=model")["total_nanos"] == nanos  # counted once


def test_billing_settles_on_a_later_retrieve_exactly_once(app, settings, store, upstream):
    unbilled, _, _, _ = SHAPES["completed_billing_not_final"]
    billed = copy.deepcopy(unbilled)
    billed["billing"] = finalised(20250, charged=True, reason="charged")
    upstream.answer("b_unbilled", (200, unbilled), (200, billed))
    for event_type in ("batch.created", "batch.completed", "batch.completed"):
        _deliver(app, "b_unbilled", event_type)
        run_worker(store)
    record = _get(app, settings, "/batches/b_unbilled")
    assert record["billing"]["state"] == "settled" and record["billing"]["total_nanos"] == 20250
    assert record["billing"]["billed_at"] == "2026-06-17T16:00:59.500Z"
    summary = _get(app, settings, "/billing/summary?group_by=day")
    assert summary["total_nanos"] == 20250 and summary["groups"][0]["key"] == "2026-06-17"


def test_snapshots_without_updated_at_are_ordered_by_their_moments(app, settings, store, upstream):
    validating, _, _, _ = SHAPES["validating"]
    running = retrieved("b_validating", "in_progress", lifecycle="running", counts=(3, 1, 0), in_progress_at=T0 + 15)
    # Retrieve answers running, then (a lagging replica) validating again: the record must not move back.
    upstream.answer("b_validating", (200, validating), (200, running), (200, validating))
    for event_type in ("batch.created", "batch.completed", "batch.failed"):
        _deliver(app, "b_validating", event_type)
        run_worker(store)
    record = _get(app, settings, "/batches/b_validating")
    assert record["status"] == "in_progress" and record["request_counts"]["completed"] == 1
    assert record["updated_at"] == "2026-06-17T15:59:15.000Z"
