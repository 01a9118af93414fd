"""End to end over real HTTP: sandbox gateway -> receiver -> RQ worker -> query API.

The sandbox delivers signed webhooks to the Flask app served on a loopback
port through a managed webhook endpoint (the only kind the gateway accepts);
the receiver verifies with that endpoint's signing secret; a stock ``rq
worker`` process reconciles through the SDK against the sandbox; the query API
must then equal the sandbox's truth.
"""

from __future__ import annotations

import dataclasses
import time

import httpx
import pytest

from aistats_hooks.sandbox import SandboxServer
from aistats_hooks.sdk import AIStats
from aistats_hooks.reconcile import track_batch
from aistats_hooks.web import create_app
from tests.helpers import Served, spawn_worker, wait_for

EVENTS = ["batch.created", "batch.completed", "batch.failed", "batch.cancelled"]
ROWS = b"".join(b'{"custom_id":"e%d","body":{"model":"openai/gpt-5-mini","input":"hi"}}\n' % n for n in range(6))


@pytest.fixture
def stack(settings):
    """Start the sandbox, a managed endpoint, the receiver and a worker process; yield handles to them."""
    # Short provider polls: terminal webhooks wait for the gateway's next poll.
    sandbox = SandboxServer(api_key=settings.api_key, speed=600.0, seed=11, poll_seconds=30,
                            fast_poll_seconds=15).start()
    auth = {"Authorization": f"Bearer {sandbox.management_key}"}  # endpoints take only the management key
    endpoint = httpx.post(sandbox.base_url + "/webhook-endpoints", headers=auth,
                          json={"url": "http://127.0.0.1:9/not-yet", "events": EVENTS}).json()
    settings = dataclasses.replace(settings, webhook_secrets=(endpoint["signing_secret"],))
    app = create_app(settings)
    served = Served(app)
    moved = httpx.patch(f"{sandbox.base_url}/webhook-endpoints/{endpoint['id']}", headers=auth,
                        json={"url": served.url + "/webhooks/aistats"})
    assert moved.status_code == 200 and moved.json()["url"] == served.url + "/webhooks/aistats"
    env = {
        "REDIS_URL": settings.redis_url, "AISTATS_API_KEY": settings.api_key,
        "AISTATS_BASE_URL": sandbox.base_url, "AISTATS_KEY_PREFIX": settings.key_prefix,
        "AISTATS_QUEUE": settings.queue_name, "AISTATS_WEBHOOK_SECRET": settings.webhook_secrets[0],
    }
    worker = spawn_worker(settings.queue_name, env, burst=False)
    sdk = AIStats(settings.api_key, sandbox.base_url)
    query = httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {settings.query_api_token}"})
    file_id = sdk.upload_file(ROWS, filename="e2e.jsonl")["id"]
    yield {"sandbox": sandbox, "app": app, "url": served.url, "sdk": sdk, "query": query,
           "endpoint_id": endpoint["id"], "file_id": file_id}
    worker.terminate()
    worker.wait(10)
    query.close()
    sdk.close()
    served.stop()
    sandbox.stop()


def create(stack, outcome: str, *, faults: str = "", session: str = "e2e", duration: int = 120, events=EVENTS) -> str:
    """Create a sandbox batch whose webhooks go to our receiver's managed endpoint."""
    metadata = {"sandbox_outcome": outcome, "sandbox_duration_s": str(duration)}
    if faults:
        metadata["sandbox_faults"] = faults
    batch = stack["sdk"].create_batch({
        "endpoint": "/v1/responses",
        "input_file_id": stack["file_id"],
        "session_id": session,
        "metadata": metadata,
        "webhook": {"endpoint_id": stack["endpoint_id"], "events": events},
    })
    return batch["id"]


def matches(stack, batch_id: str, real: dict) -> bool:
    resp = stack["query"].get(f"/batches/{batch_id}")
    if resp.status_code != 200:
        return False
    ours = resp.json()
    status = {"canceled": "cancelled"}.get(real["status"], real["status"])
    return (
        ours["status"] == status
        and ours["billing"]["state"] == real["billing"]["state"]
        and ours["billing"]["total_nanos"] == real["billing"]["total_nanos"]
        and ours["request_counts"] == real["request_counts"]
        and ours["source"] == "retrieve"
    )


def sandbox_truth(stack, settings, batch_id: str) -> dict:
    resp = httpx.get(f"{stack['sandbox'].url}/_sandbox/batches/{batch_id}",
                     headers={"Authorization": f"Bearer {settings.api_key}"})
    resp.raise_for_status()
    return resp.json()


def settle(stack, settings, ids, timeout=45.0):
    """Wait until every batch is terminal in the sandbox and equal to it in the query API."""
    def done():
        truths = {b: sandbox_truth(stack, settings, b) for b in ids}
        if any(t["status"] not in ("completed", "failed", "cancelled", "expired") for t in truths.values()):
            return False
        return all(matches(stack, b, truths[b]) for b in ids) and truths
    try:
        return wait_for(done, timeout=timeout, interval=0.25)
    except AssertionError:
        for b in ids:  # say which batch differs, and how
            real, ours = sandbox_truth(stack, settings, b), stack["query"].get(f"/batches/{b}").json()
            keep = ("status", "billing", "request_counts", "source", "updated_at", "reconcile_count")
            print(b, {k: real.get(k) for k in keep}, {k: ours.get(k) for k in keep},
                  [(e["type"], e.get("outcome")) for e in stack["query"].get(f"/batches/{b}/events").json()["data"]])
        raise


def test_every_outcome_reconciles_to_the_truth(stack, settings):
    ids = {outcome: create(stack, outcome) for outcome in ("completed", "failed", "cancelled", "expired")}
    truths = settle(stack, settings, ids.values())
    summary = stack["query"].get("/billing/summary", params={"group_by": "session_id"}).json()
    expected = sum(t["billing"]["total_nanos"] for t in truths.values() if t["billing"]["state"] == "settled")
    assert expected > 0
    assert summary["total_nanos"] == expected
    assert summary["groups"] == [{"key": "e2e", "total_nanos": expected, "total_usd": summary["total_usd"]}]
    for outcome, batch_id in ids.items():
        events = stack["query"].get(f"/batches/{batch_id}/events").json()["data"]
        # The gateway announces an expired batch as batch.failed.
        announced = "batch.failed" if outcome == "expired" else f"batch.{outcome}"
        assert any(e["type"] == announced for e in events), outcome
    for outcome in ("failed", "cancelled", "expired"):  # charged for their completed requests, else void
        truth = truths[ids[outcome]]
        charged = truth["request_counts"]["completed"] > 0
        assert truth["billing"]["state"] == ("settled" if charged else "void"), outcome
        assert truth["sandbox"]["billing_reason"] == ("charged_partial_success" if charged else outcome)
    # A batch.failed delivery whose data says expired ends as expired, not failed.
    expired_events = stack["query"].get(f"/batches/{ids['expired']}/events").json()["data"]
    assert [e["type"] for e in expired_events if e["type"] != "batch.created"] == ["batch.failed"]
    assert stack["query"].get(f"/batches/{ids['expired']}").json()["status"] == "expired"


@pytest.mark.slow
def test_faulty_deliveries_still_converge_and_bill_once(stack, settings):
    ids = [
        create(stack, "completed", faults="duplicate", session="faults"),
        create(stack, "completed", faults="out_of_order", session="faults"),
        create(stack, "completed", faults="bad_signature", session="faults"),
        create(stack, "completed", faults="retrieve_500", session="faults"),
    ]
    truths = settle(stack, settings, ids, timeout=60)
    summary = stack["query"].get("/billing/summary", params={"group_by": "session_id"}).json()
    assert summary["total_nanos"] == sum(t["billing"]["total_nanos"] for t in truths.values())
    dup_events = stack["query"].get(f"/batches/{ids[0]}/events").json()["data"]
    assert any(e.get("duplicates") for e in dup_events)


def test_dropped_terminal_delivery_is_recovered_by_the_sweep(stack, settings):
    store = stack["app"].extensions["aistats"]
    # Subscribed to the terminal event only, and that delivery is dropped:
    # no webhook ever arrives. The CLI tracks batches it creates; so do we.
    batch_id = create(stack, "completed", faults="drop", session="dropped", events=["batch.completed"])
    track_batch(store, stack["sdk"].retrieve_batch(batch_id))
    wait_for(lambda: sandbox_truth(stack, settings, batch_id)["status"] == "completed", timeout=30)
    time.sleep(0.5)
    assert stack["query"].get(f"/batches/{batch_id}").json()["source"] == "tracked"
    assert stack["query"].get(f"/batches/{batch_id}/events").json()["data"] == []
    # What the cron process does every interval: re-queue open, stale batches.
    due = store.due_for_sweep(time.time() + 1)
    assert batch_id in due
    for stale in due:
        store.request_reconcile(stale)
    settle(stack, settings, [batch_id])


def test_lost_terminal_webhooks_converge_through_discovery_and_the_sweep(stack, settings, monkeypatch):
    """lost_terminal: the gateway never sends these batches' terminal webhook, and bills them a retry later
    (pipeline/batch-reconciliation.ts). Discovery sees them end; the sweep retrieves until billing is final."""
    from aistats_hooks import discovery
    from workers import context
    from workers.jobs import sweep

    for name, value in {"REDIS_URL": settings.redis_url, "AISTATS_API_KEY": settings.api_key,
                        "AISTATS_BASE_URL": stack["sandbox"].base_url, "AISTATS_KEY_PREFIX": settings.key_prefix,
                        "AISTATS_QUEUE": settings.queue_name, "AISTATS_WEBHOOK_SECRET": "whsec_unused_in_this_test",
                        "AISTATS_STALE_AFTER": "5", "AISTATS_SWEEP_MAX_PER_HOUR": "0"}.items():
        monkeypatch.setenv(name, value)
    context.current.cache_clear()
    ctx = context.current()
    try:
        ids = [create(stack, outcome, faults="lost_terminal", session="lost")
               for outcome in ("completed", "cancelled", "expired")]
        for batch_id in ids:
            track_batch(ctx.store, stack["sdk"].retrieve_batch(batch_id))

        def cron():  # what the cron does every second, as often as the wait polls
            discovery.poll(ctx.store, ctx.client, force=True)
            sweep()
            return settle_once()

        def settle_once():
            truths = {b: sandbox_truth(stack, settings, b) for b in ids}
            final = all(t["billing"]["state"] in ("settled", "void") for t in truths.values())
            return final and all(matches(stack, b, truths[b]) for b in ids) and truths

        truths = wait_for(cron, timeout=60, interval=0.5)
        stats = httpx.get(f"{stack['sandbox'].url}/_sandbox/stats",
                          headers={"Authorization": f"Bearer {settings.api_key}"}).json()
        assert stats["faults_injected"]["lost_terminal"] == 3
        for batch_id in ids:
            events = stack["query"].get(f"/batches/{batch_id}/events").json()["data"]
            assert not [e for e in events if e["type"] != "batch.created"]  # no terminal webhook ever came
        summary = stack["query"].get("/billing/summary", params={"group_by": "session_id"}).json()
        expected = sum(t["billing"]["total_nanos"] for t in truths.values() if t["billing"]["state"] == "settled")
        assert summary["total_nanos"] == expected > 0
    finally:
        context.current.cache_clear()
