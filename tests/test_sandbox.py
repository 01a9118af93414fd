"""The sandbox gateway, over real HTTP: the SDK against it, webhooks into a local receiver.

Every test runs a ``SandboxServer`` on a loopback port at a high ``speed`` so a
simulated lifecycle of minutes takes a fraction of a real second.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from aistats_hooks.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    SignatureError,
    UpstreamUnavailable,
)
from aistats_hooks.sandbox import SandboxServer, create_app
from aistats_hooks.sandbox.validation import validate_create
from aistats_hooks.sdk import AIStats
from aistats_hooks.signatures import verify_signature
from tests import helpers

API_KEY = "sk_sandbox_test"
SECRET = "whsec_sandbox_test"
TERMINAL = {"completed", "failed", "cancelled", "expired"}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
FIXTURE = str(helpers.FIXTURE)  # shared/'s sample, or the copy in tests/fixtures
FIXTURE_KEYS = {
    "id", "object", "kind", "status", "lifecycle_status", "request_id", "session_id", "app_id", "native_id",
    "provider", "model", "polling_url", "websocket_url", "cancel_url", "webhook", "endpoint",
    "completion_window", "input_file_id", "output_file_id", "error_file_id", "pricing_lines",
    "request_counts", "upstream_error", "billing", "metadata", "created_at", "updated_at",
}


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.01):
    """Poll ``predicate`` with this file's shorter defaults."""
    return helpers.wait_for(predicate, timeout=timeout, interval=interval)


@dataclass
class Delivery:
    """One POST the receiver got."""

    path: str
    body: bytes
    headers: dict[str, str]
    sim_at: float
    event: dict = field(init=False)

    def __post_init__(self) -> None:
        self.event = json.loads(self.body)

    @property
    def attempt(self) -> int:
        return int(self.headers["x-phaseo-attempt"])


class Receiver:
    """A webhook receiver on a loopback port that records and answers by a policy."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.clock = None  # set to a sandbox clock to stamp receipts in simulated time
        # policy(delivery, receiver) -> status or (status, headers); default 200.
        self.policy = lambda delivery, receiver: 200
        self._lock = threading.Lock()
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=lambda: self.server.serve_forever(poll_interval=0.05), daemon=True)
        self.thread.start()

    @Request.application
    def _app(self, request: Request) -> Response:
        sim_at = self.clock.now() if self.clock else time.time()
        delivery = Delivery(request.path, request.get_data(), {k.lower(): v for k, v in request.headers.items()},
                            sim_at)
        with self._lock:
            self.deliveries.append(delivery)
        answer = self.policy(delivery, self)
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return Response("ok", status=status, headers=headers)

    def of(self, batch_id: str, event_type: str | None = None, path: str = "/hook") -> list[Delivery]:
        """Return the deliveries about ``batch_id`` (optionally of one type), in arrival order."""
        with self._lock:
            return [d for d in self.deliveries if d.event["data"]["id"] == batch_id and d.path == path
                    and (event_type is None or d.event["type"] == event_type)]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def sandbox_factory():
    started = []

    def make(**options) -> SandboxServer:
        options = {"api_key": API_KEY, "speed": 1200.0, "seed": 1, **options}
        server = SandboxServer(**options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def srv(sandbox_factory, receiver):
    server = sandbox_factory()
    receiver.clock = server.gateway.clock
    return server


@pytest.fixture
def client(srv):
    with AIStats(API_KEY, srv.base_url, timeout=10) as sdk:
        yield sdk


def request(duration: float = 60, outcome: str | None = "completed", *, faults: str | None = None,
            hook: dict | None = None, **body) -> dict:
    """Return a create-batch body steered by sandbox metadata."""
    metadata = {"sandbox_duration_s": duration}
    if outcome:
        metadata["sandbox_outcome"] = outcome
    if faults:
        metadata["sandbox_faults"] = faults
    result = {"endpoint": "/v1/responses", "prompts": ["a", "b", "c", "d"], "metadata": metadata, **body}
    if hook is not None:
        result["webhook"] = hook
    return result


def hook(receiver: Receiver, events=None, secret: str | None = SECRET) -> dict:
    """Return a webhook block pointing at the receiver."""
    block = {"url": receiver.url}
    if events is not None:
        block["events"] = events
    if secret:
        block["secret"] = secret
    return block


def truth(srv: SandboxServer, batch_id: str) -> dict:
    return srv.gateway.truth(batch_id)


def wait_terminal(srv: SandboxServer, batch_id: str, timeout: float = 5.0) -> dict:
    return wait_for(lambda: (b := truth(srv, batch_id))["status"] in TERMINAL and b, timeout)


def verified(delivery: Delivery, secret: str = SECRET) -> bool:
    try:
        verify_signature(delivery.body, delivery.headers, [secret])
    except SignatureError:
        return False
    return True


# -- the API through the SDK -------------------------------------------------


def test_create_returns_the_fixture_shape_and_hides_the_secret(client, receiver):
    body = request(hook=hook(receiver), session_id="run-1", model="openai/gpt-5-mini")
    body["metadata"]["team"] = "search"
    batch = client.create_batch(body)
    with open(FIXTURE) as handle:
        assert set(json.load(handle)["data"]) == FIXTURE_KEYS
    assert set(batch) == FIXTURE_KEYS
    assert re.fullmatch(r"batch_[0-9a-f]+", batch["id"])
    assert (batch["object"], batch["kind"], batch["status"], batch["lifecycle_status"]) == (
        "batch", "batch", "pending", "pending")
    assert batch["provider"] == "openai" and batch["model"] == "openai/gpt-5-mini"
    assert batch["session_id"] == "run-1" and batch["metadata"]["team"] == "search"
    assert batch["polling_url"].endswith(f"/v1/batches/{batch['id']}")
    assert batch["cancel_url"] == batch["polling_url"] + "/cancel"
    assert batch["websocket_url"].startswith("ws://") and batch["websocket_url"].endswith(f"/batch/{batch['id']}/ws")
    assert batch["request_counts"] == {"total": 4, "completed": 0, "failed": 0}
    assert batch["billing"]["state"] == "pending" and batch["billing"]["total_nanos"] == 0
    assert ISO.match(batch["created_at"]) and ISO.match(batch["updated_at"])
    webhook = batch["webhook"]
    assert webhook["has_secret"] is True and "secret" not in webhook and SECRET not in json.dumps(batch)
    assert webhook["events"] == ["job.completed", "job.failed", "job.cancelled", "job.expired"]
    assert webhook["delivery"]["total_attempts"] == 0


@pytest.mark.parametrize("source", ["uploaded", "made_up", "prompts", "items", "requests"])
def test_create_with_each_input_source(client, source):
    if source == "uploaded":
        file = client.upload_file(b'{"a":1}\n{"a":2}\n\n{"a":3}\n')
        body = {"endpoint": "responses", "input_file_id": file["id"]}
        expected = 3
    elif source == "made_up":
        body = {"endpoint": "responses", "input_file_id": "file_made_up"}
        expected = None
    else:
        body = {"endpoint": "responses", source: [{"n": i} for i in range(5)]}
        expected = 5
    batch = client.create_batch(body)
    total = batch["request_counts"]["total"]
    assert total == expected if expected is not None else 1 <= total <= 20
    assert batch["endpoint"] == "/v1/responses"
    assert batch["input_file_id"] == body.get("input_file_id")


def test_upload_file_from_bytes_and_from_a_path(client, tmp_path):
    from_bytes = client.upload_file(b'{"x":1}\n', filename="one.jsonl")
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b'{"x":1}\n{"x":2}\n')
    from_path = client.upload_file(path)
    assert re.fullmatch(r"file_[0-9a-f]+", from_bytes["id"]) and from_bytes["id"] != from_path["id"]
    assert (from_bytes["object"], from_bytes["purpose"], from_bytes["filename"], from_bytes["bytes"]) == (
        "file", "batch", "one.jsonl", 8)
    assert (from_path["filename"], from_path["bytes"]) == ("requests.jsonl", 16)
    assert isinstance(from_path["created_at"], int)
    batch = client.create_batch({"endpoint": "/v1/responses", "input_file_id": from_path["id"]})
    assert batch["request_counts"]["total"] == 2


def test_retrieve_and_list_with_repeated_status_filters(client, srv):
    done = [client.create_batch(request(outcome=o))["id"] for o in ("completed", "failed", "completed")]
    for batch_id in done:
        wait_terminal(srv, batch_id)
    running = client.create_batch(request(duration=10**6))["id"]
    assert client.retrieve_batch(done[1])["status"] == "failed"

    listed = client.list_batches(status=["completed", "failed"], limit=10)
    assert listed["object"] == "list" and listed["has_more"] is False
    assert [b["id"] for b in listed["data"]] == list(reversed(done))  # newest first
    only_pending = client.list_batches(status="pending")["data"]
    assert [b["id"] for b in only_pending] == [running]

    first = client.list_batches(limit=2)
    assert first["has_more"] is True and [b["id"] for b in first["data"]] == [running, done[2]]
    rest = client.list_batches(limit=2, after=first["data"][-1]["id"])
    assert rest["has_more"] is False and [b["id"] for b in rest["data"]] == [done[1], done[0]]
    with pytest.raises(InvalidRequestError):
        client.list_batches(limit=0)


def test_cancel_goes_through_cancelling_and_409s_once_terminal(client, srv):
    batch = client.create_batch(request(duration=100_000, outcome="completed"))
    wait_for(lambda: client.retrieve_batch(batch["id"])["status"] == "in_progress")
    cancelling = client.cancel_batch(batch["id"])
    assert cancelling["status"] == "cancelling" and cancelling["cancel_url"] is None
    assert cancelling["updated_at"] > batch["updated_at"]
    assert client.cancel_batch(batch["id"])["status"] == "cancelling"  # asking twice is harmless
    final = wait_terminal(srv, batch["id"])
    assert final["status"] == "cancelled" and final["lifecycle_status"] == "cancelled"
    assert final["billing"]["state"] == "void" and final["billing"]["total_nanos"] == 0
    with pytest.raises(InvalidRequestError) as refused:
        client.cancel_batch(batch["id"])
    assert refused.value.status == 409 and refused.value.request_id.startswith("req_")


def test_unknown_batch_is_404(client, srv):
    with pytest.raises(NotFoundError):
        client.retrieve_batch("batch_nope")
    with pytest.raises(NotFoundError):
        client.cancel_batch("batch_nope")
    response = httpx.get(f"{srv.url}/_sandbox/batches/batch_nope", headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "batch_not_found"


def test_bad_key_is_401_everywhere(srv):
    with AIStats("sk_wrong", srv.base_url) as wrong, pytest.raises(AuthenticationError) as refused:
        wrong.list_batches()
    assert refused.value.status == 401
    for path in ("/_sandbox/stats", "/v1/batches/batch_x", "/v1/nowhere"):
        response = httpx.get(srv.url + path, headers={"Authorization": "Bearer sk_wrong"})
        assert response.status_code == 401, path
        assert response.json()["error"]["type"] == "authentication_error"
        assert response.headers["x-request-id"].startswith("req_")
    assert httpx.get(srv.url + "/_sandbox/stats").status_code == 401


@pytest.mark.parametrize("body, code", [
    ({"prompts": ["a"]}, "missing_endpoint"),
    ({"endpoint": "responses"}, "invalid_input_source"),
    ({"endpoint": "responses", "prompts": ["a"], "items": ["b"]}, "invalid_input_source"),
    ({"endpoint": "responses", "prompts": []}, "invalid_prompts"),
    ({"endpoint": "responses", "prompts": ["a"], "webhook": {"url": "http://example.com/hook"}}, "invalid_webhook_url"),
    ({"endpoint": "responses", "prompts": ["a"], "webhook": {"url": "ftp://localhost/x"}}, "invalid_webhook_url"),
    ({"endpoint": "responses", "prompts": ["a"], "webhook": {"url": "https://h.example", "events": ["batch.nope"]}},
     "invalid_webhook_events"),
    ({"endpoint": "responses", "prompts": ["a"], "metadata": {"sandbox_outcome": "exploded"}}, "invalid_metadata"),
    ({"endpoint": "responses", "prompts": ["a"], "metadata": {"sandbox_faults": "drop,gremlins"}}, "invalid_metadata"),
    ([1, 2], "invalid_json"),
])
def test_invalid_create_is_400(srv, body, code):
    response = httpx.post(srv.base_url + "/batches", json=body, headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 400
    assert response.json()["error"] == {"message": response.json()["error"]["message"],
                                        "type": "invalid_request_error", "code": code}
    assert response.headers["x-request-id"].startswith("req_")


def test_local_webhook_urls_are_accepted_and_sdk_maps_400(client):
    for url in ("http://localhost:9/x", "http://127.0.0.1:9/x", "http://[::1]:9/x", "https://hooks.example.com/x"):
        assert client.create_batch(request(hook={"url": url}))["webhook"]["url"] == url
    with pytest.raises(InvalidRequestError) as refused:
        client.create_batch(request(outcome=None, faults="gremlins"))
    assert refused.value.status == 400


# -- lifecycle ------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["completed", "failed", "expired", "cancelled"])
def test_lifecycle_reaches_each_outcome_with_monotonic_counts(sandbox_factory, outcome):
    srv = sandbox_factory(speed=300.0)
    with AIStats(API_KEY, srv.base_url) as client:
        batch = client.create_batch(request(duration=120, outcome=outcome, model="openai/gpt-5-mini",
                                            prompts=list(range(40))))
        seen = [batch]
        while seen[-1]["status"] not in TERMINAL:
            time.sleep(0.005)
            seen.append(client.retrieve_batch(batch["id"]))
            assert len(seen) < 2000, "never reached a terminal status"
    statuses = [b["status"] for b in seen]
    assert statuses[0] == "pending" and "in_progress" in statuses and statuses[-1] == outcome
    for before, after in zip(seen, seen[1:]):
        for key in ("completed", "failed"):
            assert after["request_counts"][key] >= before["request_counts"][key]
        assert after["updated_at"] >= before["updated_at"]
        if after != before:
            assert after["updated_at"] > before["updated_at"]
    progress = {b["request_counts"]["completed"] for b in seen if b["status"] == "in_progress"}
    assert len(progress) >= 3, "counts should rise in visible steps"
    final = seen[-1]
    assert final["cancel_url"] is None
    billing, lines = final["billing"], final["pricing_lines"]
    if outcome == "completed":
        assert final["request_counts"]["completed"] + final["request_counts"]["failed"] == 40
        assert billing["state"] == "settled" and billing["billable"] is True
        assert billing["total_nanos"] == sum(line["total_nanos"] for line in lines) > 0
        assert lines[0]["units"] == final["request_counts"]["completed"]
        assert billing["total_nanos"] == 10125 * final["request_counts"]["completed"]
        assert lines[0]["total_usd_str"] == f"0.{billing['total_nanos']:09d}"
        assert final["output_file_id"] and ISO.match(billing["billed_at"])
    else:
        assert billing["state"] == "void" and billing["total_nanos"] == 0 and lines == []
        assert billing["billable"] is False and final["output_file_id"] is None
    if outcome == "cancelled":
        assert "cancelling" in statuses


def test_same_seed_same_plans(sandbox_factory):
    plans = []
    for _ in range(2):
        srv = sandbox_factory(seed=42, speed=1.0)
        with AIStats(API_KEY, srv.base_url) as client:
            ids = [client.create_batch({"endpoint": "responses", "input_file_id": "file_demo"})["id"]
                   for _ in range(5)]
        plans.append([(t["model"], t["request_counts"]["total"], t["sandbox"]["outcome"])
                      for t in (truth(srv, i) for i in ids)])
    assert plans[0] == plans[1]
    assert len({p[0] for p in plans[0]}) > 1 or len({p[1] for p in plans[0]}) > 1


def test_two_thousand_concurrent_batches_cost_little_cpu(sandbox_factory):
    srv = sandbox_factory(speed=2000.0)
    gateway = srv.gateway
    started = time.process_time()
    ids = [gateway.create_batch(validate_create(request(duration=2000 + i % 500, prompts=list(range(50)))),
                                "req_bulk")["id"] for i in range(2000)]
    assert sum(gateway.batches_by_status().get(s, 0) for s in ("pending", "in_progress")) == 2000
    wait_for(lambda: gateway.batches_by_status() == {"completed": 2000}, timeout=15, interval=0.1)
    # About 1.25 s of real time with 2,000 live batches: the clock must mostly sleep.
    assert time.process_time() - started < 3
    assert all(truth(srv, i)["billing"]["total_nanos"] > 0 for i in ids[::100])


# -- webhooks -------------------------------------------------------------------


def test_default_subscription_gets_only_the_signed_terminal_event(client, srv, receiver):
    batch = client.create_batch(request(hook=hook(receiver)))
    delivery = wait_for(lambda: receiver.of(batch["id"]))[0]
    assert verified(delivery)
    assert delivery.event["type"] == "batch.completed"
    assert delivery.event["id"] == f"evt_batch_{batch['id']}_batch_completed"
    assert delivery.event["delivery"] == {"key": "batch.completed", "attempt": 1, "max_attempts": 4}
    assert delivery.event["data"]["status"] == "completed" and set(delivery.event["data"]) == FIXTURE_KEYS
    headers = delivery.headers
    assert headers["content-type"] == "application/json" and headers["user-agent"] == "Phaseo-Async-Webhook/1.0"
    assert (headers["x-phaseo-event-id"], headers["x-phaseo-event-type"], headers["x-phaseo-delivery-key"]) == (
        delivery.event["id"], "batch.completed", "batch.completed")
    assert (headers["x-phaseo-attempt"], headers["x-phaseo-max-attempts"]) == ("1", "4")
    assert abs(int(headers["x-phaseo-timestamp"]) - time.time()) < 5  # real seconds, not simulated
    assert SECRET not in delivery.body.decode()
    summary = wait_for(lambda: (t := truth(srv, batch["id"]))["webhook"]["delivery"]["total_attempts"] and t)
    assert summary["webhook"]["delivery"]["delivered_events"] == 1
    assert summary["webhook"]["delivery"]["last_response_status"] == 200
    wait_for(srv.deliverer.idle)
    assert [d.event["type"] for d in receiver.of(batch["id"])] == ["batch.completed"]


def test_job_star_subscription_gets_created_progress_and_terminal(sandbox_factory, receiver):
    srv = sandbox_factory(speed=300.0)
    with AIStats(API_KEY, srv.base_url) as client:
        batch = client.create_batch(request(duration=120, prompts=list(range(50)), hook=hook(
            receiver, events=["job.created", "job.progress", "job.completed"])))
    wait_for(lambda: receiver.of(batch["id"], "batch.completed"))
    wait_for(srv.deliverer.idle)
    events = [d.event for d in receiver.of(batch["id"])]
    types = [e["type"] for e in events]
    # Delivery order is not guaranteed, but these are simulated seconds apart.
    assert types[0] == "batch.created" and types.count("batch.completed") == 1
    progress = sorted((e for e in events if e["type"] == "batch.progress"), key=lambda e: e["data"]["updated_at"])
    assert len(progress) >= 3
    buckets = [int(e["delivery"]["key"].split(":")[1]) for e in progress]
    assert buckets == sorted(set(buckets)) and all(b % 10 == 0 and 10 <= b <= 90 for b in buckets)
    for event, bucket in zip(progress, buckets):
        assert event["id"] == f"evt_batch_{batch['id']}_batch_progress_{bucket}"
        assert event["data"]["status"] == "in_progress"
        counts = event["data"]["request_counts"]
        assert (100 * (counts["completed"] + counts["failed"]) // counts["total"]) // 10 * 10 == bucket
    assert all(verified(d) for d in receiver.of(batch["id"]))


def test_unsigned_when_no_secret(client, receiver):
    batch = client.create_batch(request(hook=hook(receiver, secret=None)))
    delivery = wait_for(lambda: receiver.of(batch["id"]))[0]
    assert "x-phaseo-signature" not in delivery.headers and "x-phaseo-timestamp" not in delivery.headers
    assert delivery.headers["x-phaseo-event-id"] == delivery.event["id"]
    assert batch["webhook"]["has_secret"] is False


def test_retry_after_500_then_200(client, srv, receiver):
    receiver.policy = lambda d, r: 500 if d.attempt == 1 else 200
    batch = client.create_batch(request(hook=hook(receiver)))
    wait_for(lambda: len(receiver.of(batch["id"])) == 2)
    first, second = receiver.of(batch["id"])
    assert (first.attempt, second.attempt) == (1, 2)
    assert first.event["id"] == second.event["id"] and second.event["delivery"]["attempt"] == 2
    assert verified(first) and verified(second)
    assert second.sim_at - first.sim_at >= 59  # one simulated minute
    delivery = wait_for(lambda: (s := truth(srv, batch["id"])["webhook"]["delivery"])["total_attempts"] == 2 and s)
    assert (delivery["delivered_events"], delivery["last_response_status"], delivery["pending_retries"]) == (1, 200, 0)
    assert delivery["next_retry_at"] is None
    wait_for(srv.deliverer.idle)
    assert len(receiver.of(batch["id"])) == 2


def test_redirect_is_a_failed_attempt_and_not_followed(client, receiver):
    def policy(delivery, r):
        if delivery.path == "/hook" and delivery.attempt == 1:
            return 302, {"Location": r.url.replace("/hook", "/elsewhere")}
        return 200
    receiver.policy = policy
    batch = client.create_batch(request(hook=hook(receiver)))
    wait_for(lambda: len(receiver.of(batch["id"])) == 2)
    assert [d.attempt for d in receiver.of(batch["id"])] == [1, 2]
    assert receiver.of(batch["id"], path="/elsewhere") == []


def test_four_failures_fail_the_delivery_permanently(sandbox_factory, receiver):
    srv = sandbox_factory(speed=3000.0)
    receiver.clock = srv.gateway.clock
    receiver.policy = lambda d, r: 503
    with AIStats(API_KEY, srv.base_url) as client:
        batch = client.create_batch(request(hook=hook(receiver)))
    wait_for(lambda: srv.gateway.stats.get("deliveries", "permanently_failed") == 1)
    deliveries = receiver.of(batch["id"])
    assert [d.attempt for d in deliveries] == [1, 2, 3, 4]
    assert len({d.event["id"] for d in deliveries}) == 1
    gaps = [b.sim_at - a.sim_at for a, b in zip(deliveries, deliveries[1:])]
    assert all(gap >= expected - 1 for gap, expected in zip(gaps, (60, 300, 900))), gaps
    wait_for(srv.deliverer.idle)
    assert len(receiver.of(batch["id"])) == 4
    summary = truth(srv, batch["id"])["webhook"]["delivery"]
    assert (summary["total_attempts"], summary["delivered_events"], summary["pending_retries"]) == (4, 0, 0)
    assert summary["last_error_message"] == "HTTP 503"
    stats = srv.gateway.stats.snapshot()["deliveries"]
    assert stats["by_status"]["503"] == 4 and stats["failed"] == 4 and stats["succeeded"] == 0


def test_receiver_down_counts_network_errors(client, srv, receiver):
    receiver.stop()
    client.create_batch(request(hook=hook(receiver)))
    wait_for(lambda: srv.gateway.stats.get("deliveries", "by_status", "network_error") >= 2)


# -- faults -----------------------------------------------------------------------


def test_fault_duplicate(client, srv, receiver):
    batch = client.create_batch(request(faults="duplicate", hook=hook(receiver)))
    wait_for(lambda: len(receiver.of(batch["id"])) == 2)
    first, second = receiver.of(batch["id"])
    assert first.event["id"] == second.event["id"] and first.attempt == second.attempt == 1
    assert verified(first) and verified(second)
    assert srv.gateway.stats.get("faults_injected", "duplicate") == 1


def test_fault_out_of_order(client, srv, receiver):
    batch = client.create_batch(request(duration=120, faults="out_of_order", hook=hook(receiver)))
    wait_for(lambda: len(receiver.of(batch["id"])) == 2)
    terminal, stale = receiver.of(batch["id"])
    assert terminal.event["type"] == "batch.completed" and stale.event["type"] == "batch.progress"
    assert stale.event["data"]["status"] in ("pending", "in_progress")
    assert stale.event["data"]["updated_at"] < terminal.event["data"]["updated_at"]
    assert stale.event["id"] != terminal.event["id"] and verified(stale)
    assert srv.gateway.stats.get("faults_injected", "out_of_order") == 1


def test_fault_drop(client, srv, receiver):
    events = ["job.created", "job.completed"]
    batch = client.create_batch(request(faults="drop", hook=hook(receiver, events=events)))
    wait_for(lambda: srv.gateway.stats.get("faults_injected", "drop") == 1)
    assert truth(srv, batch["id"])["status"] == "completed"
    wait_for(lambda: receiver.of(batch["id"]))
    wait_for(srv.deliverer.idle)
    assert [d.event["type"] for d in receiver.of(batch["id"])] == ["batch.created"]


def test_fault_bad_signature(client, srv, receiver):
    receiver.policy = lambda d, r: 200 if verified(d) else 401
    batch = client.create_batch(request(faults="bad_signature", hook=hook(receiver)))
    wait_for(lambda: len(receiver.of(batch["id"])) == 2)
    first, second = receiver.of(batch["id"])
    assert (first.attempt, verified(first)) == (1, False)
    assert (second.attempt, verified(second)) == (2, True)
    assert srv.gateway.stats.get("faults_injected", "bad_signature") == 1


def test_fault_delay(sandbox_factory, receiver):
    # Slower, so the undelayed delivery's latency stays far below the delay.
    srv = sandbox_factory(speed=300.0)
    receiver.clock = srv.gateway.clock
    with AIStats(API_KEY, srv.base_url) as client:
        plain = client.create_batch(request(hook=hook(receiver)))
        held = client.create_batch(request(faults="delay", hook=hook(receiver)))
    on_time = wait_for(lambda: receiver.of(plain["id"]))[0]
    late = wait_for(lambda: receiver.of(held["id"]))[0]
    assert on_time.sim_at - on_time.event["created_at"] < 60
    assert late.sim_at - late.event["created_at"] >= 119
    assert srv.gateway.stats.get("faults_injected", "delay") == 1


def test_fault_replay(client, srv, receiver):
    batch = client.create_batch(request(faults="replay", hook=hook(receiver)))
    wait_for(lambda: len(receiver.of(batch["id"])) == 2)
    original, replay = receiver.of(batch["id"])
    assert replay.body == original.body and replay.headers["x-phaseo-signature"] == original.headers[
        "x-phaseo-signature"]
    assert replay.headers["x-phaseo-timestamp"] == original.headers["x-phaseo-timestamp"]
    assert replay.sim_at - original.sim_at >= 299 and verified(replay)
    assert srv.gateway.stats.get("faults_injected", "replay") == 1


def test_fault_retrieve_500(client, srv):
    batch = client.create_batch(request(faults="retrieve_500"))
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable) as failed:
            client.retrieve_batch(batch["id"])
        assert failed.value.status == 500
    assert client.retrieve_batch(batch["id"])["id"] == batch["id"]
    stats = srv.gateway.stats.snapshot()
    assert stats["faults_injected"]["retrieve_500"] == 2
    assert stats["retrieve_calls"]["by_batch"][batch["id"]] == 3


def test_fault_retrieve_429(client, srv):
    batch = client.create_batch(request(faults="retrieve_429,retrieve_500"))
    with pytest.raises(RateLimitError) as limited:
        client.retrieve_batch(batch["id"])
    assert limited.value.retry_after == 1.0
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            client.retrieve_batch(batch["id"])
    assert client.retrieve_batch(batch["id"])["id"] == batch["id"]
    assert truth(srv, batch["id"])["sandbox"]["faults"] == ["retrieve_429", "retrieve_500"]


def test_fault_retrieve_slow(sandbox_factory):
    srv = sandbox_factory(slow_seconds=0.3)
    with AIStats(API_KEY, srv.base_url) as client:
        slow = client.create_batch(request(faults="retrieve_slow"))
        fast = client.create_batch(request())
        started = time.monotonic()
        client.retrieve_batch(slow["id"])
        assert time.monotonic() - started >= 0.3
        started = time.monotonic()
        client.retrieve_batch(fast["id"])
        truth(srv, slow["id"])
        assert time.monotonic() - started < 0.3
    assert srv.gateway.stats.get("faults_injected", "retrieve_slow") == 1


def test_fault_rates_assign_faults_to_new_batches(sandbox_factory):
    always = sandbox_factory(faults={"drop": 1.0, "duplicate": 0.0})
    never = sandbox_factory(faults="drop=0")
    for srv, expected in ((always, ["drop"]), (never, [])):
        with AIStats(API_KEY, srv.base_url) as client:
            ids = [client.create_batch(request(duration=10**6))["id"] for _ in range(5)]
        assert all(truth(srv, i)["sandbox"]["faults"] == expected for i in ids)
    assert always.gateway.stats.get("faults_assigned", "drop") == 5


def test_stats_endpoint_and_reset(client, srv, receiver):
    batch = client.create_batch(request(hook=hook(receiver, events=["batch.created", "batch.completed"])))
    wait_for(lambda: len(receiver.of(batch["id"])) == 2)
    client.retrieve_batch(batch["id"])
    headers = {"Authorization": f"Bearer {API_KEY}"}
    stats = httpx.get(srv.url + "/_sandbox/stats", headers=headers).json()
    assert stats["retrieve_calls"] == {"total": 1, "by_batch": {batch["id"]: 1}}
    assert stats["events_generated"]["by_type"] == {"batch.created": 1, "batch.completed": 1}
    assert stats["deliveries"]["attempted"] == stats["deliveries"]["succeeded"] == 2
    assert stats["deliveries"]["by_status"] == {"200": 2}
    assert stats["batches_by_status"] == {"completed": 1}
    assert stats["faults_injected"] == {}
    assert httpx.post(srv.url + "/_sandbox/reset-stats", headers=headers).status_code == 200
    reset = httpx.get(srv.url + "/_sandbox/stats", headers=headers).json()
    assert reset["retrieve_calls"]["total"] == 0 and reset["batches_by_status"] == {"completed": 1}


def test_create_app_alone_advances_on_requests():
    app = create_app(api_key="k", speed=10_000.0)
    http = app.test_client()
    auth = {"Authorization": "Bearer k"}
    batch = http.post("/v1/batches", json=request(), headers=auth).get_json()
    final = wait_for(lambda: (b := http.get(f"/v1/batches/{batch['id']}", headers=auth).get_json())["status"]
                     == "completed" and b)
    assert final["billing"]["state"] == "settled"


# -- command line -------------------------------------------------------------------


def test_cli_refuses_bad_options_and_documents_all():
    run = [sys.executable, "-m", "aistats_hooks.sandbox"]
    bad = subprocess.run(run + ["--api-key", "k", "--faults", "gremlins=1"], capture_output=True, text=True)
    assert bad.returncode != 0 and "gremlins" in bad.stderr
    helped = subprocess.run(run + ["--help"], capture_output=True, text=True)
    assert helped.returncode == 0
    for option in ("--port", "--api-key", "--speed", "--host", "--seed", "--faults", "--delivery-workers",
                   "--slow-seconds"):
        assert option in helped.stdout


def test_cli_serves_until_terminated():
    process = subprocess.Popen(
        [sys.executable, "-m", "aistats_hooks.sandbox", "--port", "0", "--api-key", "k", "--speed", "60"],
        stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        base_url = re.search(r"(http://\S+/v1)", line).group(1)
        response = httpx.get(base_url + "/batches", headers={"Authorization": "Bearer k"})
        assert response.status_code == 200 and response.json()["data"] == []
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
