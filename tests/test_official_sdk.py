"""The official ``phaseo`` client against the sandbox, and this service on the receiving side.

What a user does with the official SDK: create a managed webhook endpoint
pointed at this service, then a batch naming it. The sandbox delivers signed
webhooks to the real receiver served on loopback; a stock ``rq worker``
process reconciles through our SDK; the reconciled billing must equal what
retrieve (read through the official client) says the batch cost.
"""

from __future__ import annotations

import json

import httpx
import pytest

pytest.importorskip("phaseo")
from gen import operations  # noqa: E402 - the official SDK's generated operations (phaseo 3.0.0)
from phaseo import Phaseo  # noqa: E402

from aistats_hooks.sandbox import SandboxServer  # noqa: E402
from aistats_hooks.sdk import AIStats  # noqa: E402
from aistats_hooks.web import create_app  # noqa: E402
from tests.helpers import Served, spawn_worker, wait_for  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture
def sandbox(settings):
    server = SandboxServer(api_key=settings.api_key, speed=600.0, seed=5).start()
    yield server
    server.stop()


def test_official_client_endpoint_and_batch_reconciled_to_retrieves_cost(settings, sandbox, tmp_path):
    official = Phaseo(api_key=settings.api_key, base_url=sandbox.base_url)
    # Endpoint management takes only the management key (an ordinary key gets 401 management_key_required).
    manager = Phaseo(api_key=sandbox.management_key, base_url=sandbox.base_url)
    # The endpoint's secret is shown once, at creation; the receiver is configured with it, then
    # the endpoint is pointed at the receiver's address.
    endpoint = operations.createWebhookEndpoint(manager._client, body={
        "url": "http://127.0.0.1:9/webhooks/aistats", "name": "official-sdk",
        "events": ["batch.created", "batch.completed", "batch.failed", "batch.cancelled"],
    })
    secret = endpoint["signing_secret"]
    assert len(endpoint["id"]) == 36 and secret.startswith("whsec_")  # a UUID, as the gateway's database makes
    ours = settings.replace(webhook_secrets=(secret,))
    served = Served(create_app(ours))
    operations.updateWebhookEndpoint(manager._client, path={"id": endpoint["id"]},
                                     body={"url": served.url + "/webhooks/aistats"})
    rows = tmp_path / "input.jsonl"
    rows.write_text("".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/responses",
                                        "body": {"model": "openai/gpt-5-nano", "input": f"row {i}"}}) + "\n"
                            for i in range(4)))
    with AIStats(settings.api_key, sandbox.base_url) as ours_sdk:  # multipart upload, as the gateway takes it
        file_id = ours_sdk.upload_file(str(rows))["id"]
    batch = official.batches.create({
        "endpoint": "/v1/responses", "input_file_id": file_id, "completion_window": "24h",
        "webhook": {"endpoint_id": endpoint["id"]},
        "metadata": {"sandbox_outcome": "completed", "sandbox_duration_s": "120"},
    })
    worker = spawn_worker(ours.queue_name, {
        "REDIS_URL": ours.redis_url, "AISTATS_API_KEY": ours.api_key, "AISTATS_BASE_URL": sandbox.base_url,
        "AISTATS_KEY_PREFIX": ours.key_prefix, "AISTATS_QUEUE": ours.queue_name, "AISTATS_WEBHOOK_SECRET": secret,
    }, burst=False)
    query = httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {ours.query_api_token}"})
    try:
        record = wait_for(lambda: (r := query.get(f"/batches/{batch['id']}").json()).get("status") == "completed"
                          and (r.get("billing") or {}).get("state") == "settled" and r, timeout=90)
        retrieved = official.batches.retrieve(batch["id"])
        assert retrieved["billing"]["cost_nanos"] > 0
        assert record["billing"]["total_nanos"] == retrieved["billing"]["cost_nanos"]
        assert record["source"] == "retrieve" and record["model"] == "openai/gpt-5-nano"
        assert query.get("/billing/summary").json()["total_nanos"] == retrieved["billing"]["cost_nanos"]
        # Every delivery verified with the endpoint's secret: none was refused, at least created and completed came.
        wait_for(lambda: {e["type"] for e in query.get(f"/batches/{batch['id']}/events").json()["data"]}
                 >= {"batch.created", "batch.completed"}, timeout=30)
        metrics = query.get("/metrics").text
        assert 'aistats_webhook_rejected_total{reason="mismatch"}' not in metrics
    finally:
        worker.terminate()
        worker.wait(10)
        query.close()
        served.stop()
