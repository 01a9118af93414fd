"""Provider-shaped batches and partial charges, as the gateway's source answers them.

Anthropic's, Google's, Mistral's and xAI's batches come back from retrieve in the provider's own
shape with only id, native_batch_id, status and request_counts normalised
(core/batch-provider-adapters.ts); cancelled, expired and failed batches are charged for their
completed requests (core/batch-finalization.ts). The pure rules are tested on raw provider objects;
then each provider's batch goes through the sandbox, a real RQ worker and real Redis, and the
record and the ledger must equal the sandbox's truth.
"""

from __future__ import annotations

import pytest

from aistats_hooks.rules.merge import normalize
from aistats_hooks.rules.provider_shapes import openai_view
from aistats_hooks.sandbox import SandboxServer
from aistats_hooks.sandbox.clock import SimClock
from aistats_hooks.sandbox.providers import normalize as gateway_normalize
from aistats_hooks.sandbox.shapes import webhook_data
from aistats_hooks.sdk import AIStats
from tests.helpers import run_worker
from workers import context

API_KEY = "sk_sandbox_providers"
TERMINAL = {"completed", "failed", "cancelled", "expired"}

# What each provider's API answers for a batch that ended with 2 of 5 requests done (docs/protocol.md).
RAW = {
    "anthropic": {
        "id": "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message_batch", "processing_status": "ended",
        "request_counts": {"processing": 0, "succeeded": 2, "errored": 0, "canceled": 3, "expired": 0},
        "ended_at": "2026-08-20T18:37:24.100435Z", "created_at": "2026-08-20T18:30:00.000000Z",
        "expires_at": "2026-08-21T18:30:00.000000Z", "archived_at": None,
        "cancel_initiated_at": "2026-08-20T18:35:00.000000Z",
        "results_url": "https://api.anthropic.com/v1/messages/batches/msgbatch_013Zva2CMHLNnXjNJJKqJ2EF/results",
    },
    "google-ai-studio": {
        "name": "batches/123456", "done": True,
        "metadata": {"@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch",
                     "state": "BATCH_STATE_CANCELLED", "createTime": "2026-08-20T18:30:00.000000Z",
                     "updateTime": "2026-08-20T18:37:24.000000Z", "endTime": "2026-08-20T18:37:24.000000Z",
                     "batchStats": {"requestCount": "5", "successfulRequestCount": "2", "failedRequestCount": "1"},
                     "output": {"responsesFile": "files/out-123"}},
    },
    "mistral": {
        "id": "5c2a3d8e-6b1f-4e6e-9a4d-2f0f8c1b7a10", "object": "batch", "input_files": ["in-uuid"],
        "status": "TIMEOUT_EXCEEDED", "created_at": 1787250600, "started_at": 1787250660,
        "completed_at": 1787251044, "total_requests": 5, "completed_requests": 3, "succeeded_requests": 2,
        "failed_requests": 1, "output_file": "out-uuid", "error_file": "err-uuid", "errors": [],
    },
    "x-ai": {
        "batch_id": "batch_7f1c", "name": "phaseo-batch_X", "create_time": "2026-08-20T18:30:00.000000Z",
        "cancel_time": "2026-08-20T18:35:00.000000Z",
        "state": {"num_requests": 5, "num_pending": 0, "num_success": 0, "num_error": 2, "num_cancelled": 3},
    },
}
# status, (total, completed, failed), output file, the terminal moment's key
EXPECTED = {
    "anthropic": ("completed", (5, 2, 3), None, "completed_at"),
    "google-ai-studio": ("cancelled", (5, 2, 1), "files/out-123", "cancelled_at"),
    "mistral": ("expired", (5, 2, 1), "out-uuid", "expired_at"),
    "x-ai": ("failed", (5, 0, 2), None, None),
}


@pytest.mark.parametrize("provider", list(RAW))
def test_a_raw_provider_object_reads_as_openai(provider):
    record = normalize(RAW[provider])
    status, counts, output, moment = EXPECTED[provider]
    assert record["status"] == status
    assert tuple(record["request_counts"][k] for k in ("total", "completed", "failed")) == counts
    assert record["output_file_id"] == output
    assert record["finalized_at"] is not None and record["created_at"].startswith("2026-08-20T18:30")
    if moment:
        assert openai_view(RAW[provider])[moment] is not None
    assert record["native_id"]


@pytest.mark.parametrize("provider", list(RAW))
def test_the_gateways_normalised_object_reads_the_same(provider):
    decorated = dict(gateway_normalize(provider, RAW[provider]), id="batch_01PUBLIC", provider=provider,
                     lifecycle_status="completed")
    raw, normalised = normalize(RAW[provider]), normalize(decorated)
    for key in ("status", "request_counts", "output_file_id", "finalized_at"):
        assert normalised[key] == raw[key], key
    assert normalised["id"] == "batch_01PUBLIC"


def test_an_ordinary_openai_object_is_left_alone():
    obj = {"id": "batch_1", "status": "in_progress", "request_counts": {"total": 3, "completed": 1, "failed": 0},
           "created_at": 1787250600, "provider": "openai"}
    assert openai_view(obj) is obj


class ManualClock(SimClock):
    """A sandbox clock that moves only when the test says so."""

    def __init__(self, start: float) -> None:
        super().__init__(1.0, start=start)
        self.at = start

    def now(self) -> float:
        return self.at


def _advance(sandbox, clock, seconds: float) -> None:
    """Move the sandbox clock in steps, applying each (progress is seen only at a step)."""
    for _ in range(int(seconds // 5)):
        clock.at += 5
        sandbox.gateway.tick()


@pytest.fixture
def clock():
    return ManualClock(1_790_000_000.0)


@pytest.fixture
def sandbox(clock):
    with SandboxServer(API_KEY, seed=3, poll_seconds=0, fast_poll_seconds=0, clock=clock) as srv:
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


def _create(sdk: AIStats, model: str, outcome: str, faults: str = "") -> str:
    rows = b"".join(b'{"custom_id":"r%d","body":{"model":"%s","input":"q"}}\n' % (n, model.encode())
                    for n in range(5))
    file_id = sdk.upload_file(rows, filename="in.jsonl")["id"]
    metadata = {"sandbox_outcome": outcome, "sandbox_duration_s": "100"}
    if faults:
        metadata["sandbox_faults"] = faults
    return sdk.create_batch({"endpoint": "/v1/responses", "input_file_id": file_id, "metadata": metadata})["id"]


def _reconcile(ctx, batch_id: str) -> dict:
    ctx.store.request_reconcile(batch_id)
    run_worker(ctx.store)
    return ctx.store.get(batch_id)


def _equal(record: dict, truth: dict) -> bool:
    billing = record.get("billing") or {}
    return (record["status"] == truth["status"] and record["request_counts"] == truth["request_counts"]
            and billing.get("state") == truth["billing"]["state"]
            and billing.get("total_nanos") == truth["billing"]["total_nanos"])


SHAPE_MARKS = {
    "anthropic/claude-haiku-4-5": lambda b: b["type"] == "message_batch" and b["processing_status"] == "ended",
    "google/gemini-2.5-flash": lambda b: b["name"].startswith("batches/") and b["metadata"]["state"].startswith(
        "BATCH_STATE_") and b["native_batch_id"] == b["name"],
    "mistral/mistral-small-latest": lambda b: b["input_files"] and b["status"] in TERMINAL | {"pending"}
    and "succeeded_requests" in b,
    "x-ai/grok-4-fast": lambda b: b["state"]["num_pending"] == 0 and b["native_batch_id"].startswith("phaseo-"),
}


@pytest.mark.parametrize("model", list(SHAPE_MARKS))
@pytest.mark.parametrize("outcome", ["completed", "cancelled"])
def test_each_providers_batch_reconciles_to_the_truth_and_bills_once(model, outcome, ctx, sandbox, clock):
    with AIStats(API_KEY, sandbox.base_url, timeout=10) as sdk:
        batch_id = _create(sdk, model, outcome)
        _advance(sandbox, clock, 200)
        truth = sandbox.gateway.truth(batch_id)
        retrieved = sdk.retrieve_batch(batch_id)
    assert SHAPE_MARKS[model](retrieved), retrieved
    assert retrieved["id"] == batch_id and retrieved["status"] == truth["status"] in TERMINAL
    record = _reconcile(ctx, batch_id)
    assert _equal(record, truth), (record, truth)
    assert record["provider"] == truth["provider"] and record["native_id"] == truth["native_id"]
    # Counted once, under the provider, however often the batch is reconciled again.
    _reconcile(ctx, batch_id)
    nanos = truth["billing"]["total_nanos"]
    assert ctx.store.ledger.by("provider") == ({truth["provider"]: nanos} if nanos else {})


def test_a_cancelled_batch_with_completed_requests_is_charged_for_them(ctx, sandbox, clock):
    with AIStats(API_KEY, sandbox.base_url, timeout=10) as sdk:
        batch_id = _create(sdk, "openai/gpt-5-mini", "cancelled")
        _advance(sandbox, clock, 200)
        first, later = sdk.retrieve_batch(batch_id), sdk.retrieve_batch(batch_id)
    counts = first["request_counts"]
    assert first["status"] == "cancelled" and 0 < counts["completed"] < counts["total"]
    assert first["output_file_id"]  # the completed requests' output, which the charge is computed from
    assert (first["billing"]["billed"], first["billing"]["charged"], first["billing"]["reason"]) == (
        True, True, "charged_partial_success")
    # After the first settlement every retrieve says already_billed, with the cost still there.
    assert (later["billing"]["charged"], later["billing"]["reason"]) == (False, "already_billed")
    assert later["billing"]["cost_nanos"] == first["billing"]["cost_nanos"] == 10125 * counts["completed"]
    record = _reconcile(ctx, batch_id)
    assert record["billing"]["state"] == "settled" and ctx.store.ledger.total() == first["billing"]["cost_nanos"]


def test_the_billing_life_pending_then_partial_then_final_is_ledgered_once(ctx, sandbox, clock):
    """lost_terminal: the gateway's pass that sees the end cannot bill (billed: false); a retry bills later."""
    with AIStats(API_KEY, sandbox.base_url, timeout=10) as sdk:
        batch_id = _create(sdk, "openai/gpt-5-mini", "expired", faults="lost_terminal")
        assert _reconcile(ctx, batch_id)["billing"] is None  # running: nothing billed
        _advance(sandbox, clock, 105)
        blocked = sdk.retrieve_batch(batch_id)
        assert blocked["status"] == "expired"
        assert (blocked["billing"]["billed"], blocked["billing"]["reason"]) == (False, "missing_output_file")
        record = _reconcile(ctx, batch_id)
        assert record["status"] == "expired" and record["billing"]["state"] == "pending"
        assert ctx.store.ledger.total() == 0
        _advance(sandbox, clock, 200)  # the gateway's retry (2 minutes later) bills the completed requests
        truth = sandbox.gateway.truth(batch_id)
        assert truth["billing"]["state"] == "settled" and truth["sandbox"]["billing_reason"] == "charged_partial_success"
        for _ in range(3):  # partial charge, then already_billed twice
            record = _reconcile(ctx, batch_id)
            assert _equal(record, truth) and ctx.store.ledger.total() == truth["billing"]["total_nanos"] > 0
        assert sdk.retrieve_batch(batch_id)["billing"]["reason"] == "already_billed"


def test_a_zero_cost_completed_batch_is_void_and_its_webhook_billing_stays_pending(ctx, sandbox, clock):
    with AIStats(API_KEY, sandbox.base_url, timeout=10) as sdk:
        batch_id = _create(sdk, "google/gemma-3-27b-it", "completed")
        _advance(sandbox, clock, 200)
        truth = sandbox.gateway.truth(batch_id)
    # core/async-notifications.ts resolveBatchBilling: charged false on a completed batch reads pending.
    assert sandbox.gateway.batch(batch_id).billing.reason == "zero_cost"
    assert webhook_data(sandbox.gateway.batch(batch_id))["billing"]["state"] == "pending"
    record = _reconcile(ctx, batch_id)
    assert record["billing"]["state"] == "void" and _equal(record, truth) and ctx.store.ledger.total() == 0


def test_every_providers_webhook_data_is_the_gateways_normalised_record(sandbox, clock):
    with AIStats(API_KEY, sandbox.base_url, timeout=10) as sdk:
        ids = {model: _create(sdk, model, "completed") for model in SHAPE_MARKS}
        _advance(sandbox, clock, 200)
    for model, batch_id in ids.items():
        data = webhook_data(sandbox.gateway.batch(batch_id))
        counts = data["request_counts"]
        assert data["status"] == "completed" and set(counts) == {"total", "completed", "failed"}
        assert counts["completed"] > 0 and data["billing"]["state"] == "settled"
        record = normalize(data)
        assert record["status"] == "completed" and record["request_counts"] == counts


@pytest.mark.parametrize("obj, status", [
    ({"type": "message_batch", "processing_status": "ended",
      "request_counts": {"succeeded": 0, "errored": 1, "canceled": 2}}, "failed"),
    ({"type": "message_batch", "processing_status": "ended", "request_counts": {"canceled": 2}}, "cancelled"),
    ({"type": "message_batch", "processing_status": "ended", "request_counts": {"expired": 2}}, "expired"),
    ({"type": "message_batch", "processing_status": "canceling", "request_counts": {}}, "in_progress"),
    ({"name": "batches/x", "metadata": {"state": "BATCH_STATE_SUCCEEDED",
                                       "batchStats": {"successfulRequestCount": "0", "failedRequestCount": "3"}}},
     "failed"),
    ({"name": "batches/x", "metadata": {"state": "JOB_STATE_PENDING"}}, "pending"),
    ({"name": "batches/x", "done": False, "metadata": {"batchStats": {}}}, "in_progress"),
    ({"input_files": [], "status": "QUEUED"}, "pending"),
    ({"input_files": [], "status": "CANCELLATION_REQUESTED"}, "in_progress"),
    ({"state": {"num_requests": 4, "num_pending": 2, "num_success": 2}}, "in_progress"),
    ({"state": {"num_requests": 4, "num_pending": 0, "num_success": 0, "num_error": 0, "num_cancelled": 4}},
     "cancelled"),
    ({"state": {"num_requests": 4, "num_success": 1, "num_error": 3}}, "completed"),
])
def test_each_providers_status_rule(obj, status):
    """core/batch-provider-adapters.ts normalizeProviderBatchStatus, as our status (status.py folds it)."""
    assert normalize(obj)["status"] == status
