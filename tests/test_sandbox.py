"""The sandbox gateway, over real HTTP, answering like the real gateway.

Every test runs a ``SandboxServer`` on a loopback port at a high ``speed`` so a
simulated lifecycle of minutes takes a fraction of a real second. Shapes are
checked against the official SDK's published types (``phaseo`` 3.0.0,
``gen.models``) where those agree with the gateway's source, and against
fixtures written from the gateway's source where they do not.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading

import httpx
import pytest
from pydantic import TypeAdapter
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from aistats_hooks.errors import SignatureError
from aistats_hooks.sandbox import SandboxServer
from aistats_hooks.sandbox.auth import default_management_key
from aistats_hooks.sandbox.notifications import event_id
from aistats_hooks.rules.signatures import verify_signature
from tests import helpers

API_KEY = "sk_sandbox_test"
# /v1/webhook-endpoints takes only the management key (the sandbox derives it from the API key by default).
MGMT = {"Authorization": f"Bearer {default_management_key(API_KEY)}"}
TERMINAL = {"completed", "failed", "cancelled", "expired"}
ULID = r"[0-9A-HJKMNP-TV-Z]{26}"
ROWS = b"".join(b'{"custom_id":"row-%d","body":{"model":"openai/gpt-5-nano","input":"q%d"}}\n' % (n, n)
                for n in range(4))
RETRIEVE_FIXTURE = helpers.FIXTURES / "batch_retrieve_completed.json"


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.01):
    return helpers.wait_for(predicate, timeout=timeout, interval=interval)


class Receiver:
    """A webhook receiver on a loopback port that records deliveries and answers by a policy."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[bytes, dict[str, str]]] = []
        self.policy = lambda body, headers: 200
        self._lock = threading.Lock()
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=lambda: self.server.serve_forever(poll_interval=0.05), daemon=True).start()

    @Request.application
    def _app(self, request: Request) -> Response:
        body, headers = request.get_data(), {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self.deliveries.append((body, headers))
        return Response("ok", status=self.policy(body, headers))

    def events(self, batch_id: str | None = None) -> list[tuple[dict, bytes, dict]]:
        with self._lock:
            items = [(json.loads(b), b, h) for b, h in self.deliveries]
        return [i for i in items if batch_id is None or i[0]["data"].get("id") == batch_id]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def make_sandbox():
    started = []

    def make(**options) -> SandboxServer:
        server = SandboxServer(**{"api_key": API_KEY, "speed": 1200.0, "seed": 1, **options}).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def srv(make_sandbox):
    return make_sandbox(poll_seconds=0)


@pytest.fixture
def http(srv):
    with httpx.Client(base_url=srv.base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as client:
        yield client


def upload(http) -> str:
    return http.post("/files", files={"file": ("in.jsonl", ROWS)}, data={"purpose": "batch"}).json()["id"]


def endpoint(http, url: str, events=None) -> dict:
    response = http.post("/webhook-endpoints", json={"url": url, **({"events": events} if events else {})},
                         headers=MGMT)
    assert response.status_code == 201, response.text
    return response.json()


def create(http, *, outcome="completed", duration=60, endpoint_id=None, faults=None, **body) -> dict:
    metadata = {"sandbox_outcome": outcome, "sandbox_duration_s": str(duration)}
    if faults:
        metadata["sandbox_faults"] = faults
    payload = {"input_file_id": upload(http), "metadata": metadata, **body}
    if endpoint_id:
        payload["webhook"] = {"endpoint_id": endpoint_id}
    response = http.post("/batches", json=payload)
    assert response.status_code == 200, response.text
    return response.json()


def terminal(srv, batch_id: str) -> dict:
    return wait_for(lambda: (t := srv.gateway.truth(batch_id))["sandbox"]["terminal"] and t)


def verified(body: bytes, headers: dict, secret: str) -> bool:
    try:
        verify_signature(body, headers, [secret])
    except SignatureError:
        return False
    return True


# -- managed webhook endpoints --------------------------------------------------


def test_endpoint_crud_matches_the_sdk_types(http, receiver):
    from gen.models import WebhookEndpoint, WebhookEndpointListResponse, WebhookEndpointSecretResponse

    created = endpoint(http, receiver.url, ["batch.completed", "BATCH.FAILED"])
    TypeAdapter(WebhookEndpointSecretResponse).validate_python(created)
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", created["signing_secret"])
    assert created["events"] == ["batch.completed", "batch.failed"]
    uuid_pattern = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    assert re.fullmatch(uuid_pattern, created["id"])  # the database's gen_random_uuid()
    assert (created["status"], created["hasSecret"], created["deletedAt"]) == ("active", True, None)
    public = http.get(f"/webhook-endpoints/{created['id']}", headers=MGMT).json()
    TypeAdapter(WebhookEndpoint).validate_python(public)
    assert "signing_secret" not in public and public == {k: v for k, v in created.items() if k != "signing_secret"}
    listed = http.get("/webhook-endpoints", headers=MGMT).json()
    TypeAdapter(WebhookEndpointListResponse).validate_python(listed)
    assert [e["id"] for e in listed["data"]] == [created["id"]]
    patched = http.patch(f"/webhook-endpoints/{created['id']}", json={"name": "renamed", "status": "disabled"},
                         headers=MGMT).json()
    assert (patched["name"], patched["status"]) == ("renamed", "disabled")
    rotated = http.post(f"/webhook-endpoints/{created['id']}/rotate-secret", headers=MGMT).json()
    assert rotated["signing_secret"] != created["signing_secret"]
    assert http.delete(f"/webhook-endpoints/{created['id']}", headers=MGMT).json() == {
        "id": created["id"], "object": "webhook_endpoint", "deleted": True}
    # Unknown names are kept too, lower-cased, no 400 (core/webhook-endpoints.ts normalizeWebhookEndpointEvents;
    # the SDK's types list only known names, so this one is not validated against them).
    assert endpoint(http, receiver.url, [" Batch.Nope ", "batch.nope", "batch.failed"])["events"] == [
        "batch.nope", "batch.failed"]
    gone = http.get(f"/webhook-endpoints/{created['id']}", headers=MGMT)
    assert gone.status_code == 404 and gone.json() == {"error": {"type": "not_found",
                                                                 "message": "Webhook endpoint not found."}}


@pytest.mark.parametrize("body, reason", [
    ({"url": "http://example.com/x"}, "webhook_url_must_use_https"),
    ({"url": "not a url"}, None),
    ({"url": "https://h.example/x", "events": ["  "]}, None),
    ({"url": "https://h.example/x", "events": "batch.completed"}, None),
])
def test_endpoint_validation_is_the_nested_400(http, body, reason):
    response = http.post("/webhook-endpoints", json=body, headers=MGMT)
    error = response.json()["error"]
    assert response.status_code == 400 and error["type"] == "validation_error"
    if reason:
        assert error["details"] == {"reason": reason}


def test_there_is_no_endpoint_test_route(http, receiver):
    created = endpoint(http, receiver.url)
    answer = http.post(f"/webhook-endpoints/{created['id']}/test", headers=MGMT)
    assert answer.status_code == 404 and receiver.events() == []


# -- batch creation ---------------------------------------------------------------


def test_inline_webhook_is_refused_like_the_gateway(http, receiver):
    response = http.post("/batches", json={"prompts": ["a"], "webhook": {"url": receiver.url, "secret": "whsec_x"}})
    body = response.json()
    assert response.status_code == 400
    assert (body["error"], body["reason"], body["status_code"]) == (
        "validation_error", "batch_webhook_endpoint_required", 400)
    assert re.fullmatch("G-" + ULID, body["request_id"]) and body["generation_id"] == body["request_id"]


@pytest.mark.parametrize("change, status, reason", [
    ({"completion_window": "48h"}, 400, "openai_batch_completion_window_unsupported"),
    ({"metadata": {"n": 1}}, 400, "invalid_batch_metadata"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, 400, "invalid_batch_metadata"),
    ({"input_file_id": "file_never_uploaded"}, 404, "batch_input_file_not_found_or_not_owned"),
    ({"endpoint": "/v1/videos/nope"}, 400, "batch_endpoint_unsupported"),
    ({"webhook_endpoint_id": "we_unknown"}, 400, "batch_webhook_endpoint_not_found_or_inactive"),
    ({"webhook": "yes"}, 400, "invalid_batch_webhook"),
])
def test_create_validation(http, change, status, reason):
    response = http.post("/batches", json={"input_file_id": upload(http), **change})
    assert (response.status_code, response.json()["reason"]) == (status, reason)


def test_retrieve_is_the_decorated_openai_object(http, srv, receiver):
    from gen.models import BatchResponse

    hook = endpoint(http, receiver.url)
    batch = create(http, endpoint_id=hook["id"], session_id="s1")
    assert re.fullmatch("batch_" + ULID, batch["id"]) and re.fullmatch("G-" + ULID, batch["request_id"])
    assert (batch["status"], batch["lifecycle_status"], batch["endpoint"]) == ("validating", "pending", "/v1/responses")
    assert "billing" not in batch and "updated_at" not in batch and batch["results_url"] is None
    assert batch["model"] == "openai/gpt-5-nano"  # from the input rows' body.model
    assert batch["completed_at"] is None and batch["output_file_id"] is None
    assert batch["metadata"]["phaseo_batch_id"] == batch["id"]
    assert batch["metadata"]["phaseo_request_id"] == batch["request_id"]
    assert batch["cancel_url"] == batch["polling_url"] + "/cancel"
    terminal(srv, batch["id"])
    final = http.get(f"/batches/{batch['id']}").json()
    # The fixture, written from the gateway's source, pins the keys (plus webhook, set here).
    assert set(final) == set(json.loads(RETRIEVE_FIXTURE.read_text())) | {"webhook"}
    # Where the SDK's BatchResponse agrees with the source (it types the *_at stamps and
    # file ids as non-null, and errors as an object, though the source leaves them null):
    TypeAdapter(BatchResponse).validate_python({k: v for k, v in final.items() if v is not None})
    assert all(isinstance(final[f"{s}_at"], int) for s in ("created", "in_progress", "finalizing", "completed"))
    assert final["cancel_url"] is None and final["results_url"] == final["polling_url"] + "/results"
    billing = final["billing"]
    assert set(billing) == {"billed", "charged", "reason", "cost_nanos", "cost_usd", "finalized_at",
                            "pricing_breakdown"}
    assert billing["cost_nanos"] == 4 * 2025 == sum(line["total_nanos"] for line in final["pricing_lines"])
    # The webhook payload's billing agrees with retrieve's.
    (event, _, _), = wait_for(lambda: [e for e in receiver.events(batch["id"]) if e[0]["type"] == "batch.completed"])
    assert event["data"]["billing"]["total_nanos"] == billing["cost_nanos"]
    assert event["data"]["billing"]["state"] == "settled" and "metadata" not in event["data"]


@pytest.mark.parametrize("outcome, lifecycle", [("completed", "completed"), ("failed", "failed"),
                                                ("expired", "expired"), ("cancelled", "cancelled")])
def test_each_outcome_ends_with_its_billing(http, srv, outcome, lifecycle):
    batch = create(http, outcome=outcome, duration=120)
    terminal(srv, batch["id"])
    final = http.get(f"/batches/{batch['id']}").json()
    assert (final["status"], final["lifecycle_status"]) == (outcome, lifecycle)
    assert isinstance(final[f"{outcome}_at"], int) and final["billing"]["billed"] is True
    counts = final["request_counts"]
    assert counts["total"] == 4 and counts["completed"] + counts["failed"] <= 4
    billing = final["billing"]
    # core/batch-finalization.ts: every terminal batch is charged for its completed requests.
    assert billing["cost_nanos"] == 2025 * counts["completed"]
    if outcome == "completed":
        assert billing["cost_nanos"] > 0 and billing["charged"] is True
    elif counts["completed"]:
        assert (billing["charged"], billing["reason"]) == (True, "charged_partial_success")
    else:
        assert (billing["charged"], billing["reason"], final["pricing_lines"]) == (False, outcome, [])


def test_list_clamps_filters_and_orders_by_update(http, srv):
    done = create(http, duration=30)
    terminal(srv, done["id"])
    running = create(http, duration=10**6)
    listed = http.get("/batches", params={"limit": 500}).json()
    assert listed["has_more"] is False and [b["id"] for b in listed["data"]] == [running["id"], done["id"]]
    item = listed["data"][1]
    assert "billing" in item and "metadata" not in item and "native_batch_id" not in item
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", item["updated_at"])
    assert [b["id"] for b in http.get("/batches", params={"statuses": "completed,failed"}).json()["data"]] == [
        done["id"]]
    assert [b["id"] for b in http.get("/batches", params={"status": "pending"}).json()["data"]] == [running["id"]]
    assert len(http.get("/batches", params={"limit": 0}).json()["data"]) == 1


def test_results_route_only_when_asked_for(http, srv):
    done = create(http, duration=30)
    terminal(srv, done["id"])
    missing = http.get(f"/batches/{done['id']}/results")  # not a route of the gateway's source
    assert (missing.status_code, missing.json()["reason"]) == (404, "route_not_found")
    output = http.get(f"/batches/{done['id']}").json()["output_file_id"]
    rows = [json.loads(line) for line in http.get(f"/files/{output}/content").text.splitlines()]
    assert [r["custom_id"] for r in rows] == [f"row-{n}" for n in range(4)]


def test_results_and_file_content(make_sandbox):
    srv = make_sandbox(poll_seconds=0, results_route=True)
    http = httpx.Client(base_url=srv.base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
    batch = create(http, duration=10**6)
    not_ready = http.get(f"/batches/{batch['id']}/results")
    assert (not_ready.status_code, not_ready.json()["error"]) == (409, "not_ready")
    done = create(http, duration=30)
    terminal(srv, done["id"])
    first = http.get(f"/batches/{done['id']}/results")
    assert first.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in first.text.splitlines()]
    assert [r["custom_id"] for r in rows] == [f"row-{n}" for n in range(4)]
    assert all(r["response"]["status_code"] == 200 for r in rows)
    output = http.get(f"/batches/{done['id']}").json()["output_file_id"]
    assert http.get(f"/files/{output}/content").content == first.content
    for _ in range(9):
        assert http.get(f"/batches/{done['id']}/results").status_code == 200
    limited = http.get(f"/batches/{done['id']}/results")
    assert (limited.status_code, limited.json()["error"]) == (429, "rate_limit_exceeded")
    assert int(limited.headers["Retry-After"]) > 0
    assert http.get(f"/files/{output}/content").status_code == 200  # file content has no limit


def test_errors_in_the_gateway_shapes(make_sandbox):
    srv = make_sandbox(batches_enabled=False)
    wrong = httpx.get(srv.base_url + "/batches", headers={"Authorization": "Bearer nope"}).json()
    assert (wrong["error"], wrong["reason"], wrong["status_code"]) == ("unauthorised", "key_not_found_or_revoked", 401)
    closed = httpx.get(srv.base_url + "/batches", headers={"Authorization": f"Bearer {API_KEY}"})
    assert (closed.status_code, closed.json()["reason"]) == (403, "batch_api_feature_flag_disabled")
    broke = make_sandbox(insufficient_funds=True)
    refused = httpx.post(broke.base_url + "/batches", json={"prompts": ["a"]},
                         headers={"Authorization": f"Bearer {API_KEY}"})
    assert refused.status_code == 402 and refused.json()["error"]["type"] == "insufficient_funds"
    missing = httpx.get(broke.base_url + "/batches/batch_nope", headers={"Authorization": f"Bearer {API_KEY}"})
    assert (missing.status_code, missing.json()["reason"]) == (404, "batch_not_found_or_not_owned")


def test_results_503_knob(make_sandbox):
    srv = make_sandbox(results_unavailable=True, poll_seconds=0, results_route=True)
    with httpx.Client(base_url=srv.base_url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        batch = create(http, duration=30)
        terminal(srv, batch["id"])
        response = http.get(f"/batches/{batch['id']}/results")
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"


# -- deliveries -------------------------------------------------------------------


def test_only_created_and_terminal_events_signed_with_the_current_secret(http, srv, receiver):
    hook = endpoint(http, receiver.url, ["batch.created", "batch.completed", "batch.failed", "batch.progress"])
    batch = create(http, endpoint_id=hook["id"], duration=120)
    wait_for(lambda: receiver.events(batch["id"]))
    rotated = http.post(f"/webhook-endpoints/{hook['id']}/rotate-secret", headers=MGMT).json()["signing_secret"]
    expired = create(http, endpoint_id=hook["id"], outcome="expired", duration=120)
    wait_for(lambda: len(receiver.events(batch["id"])) == 2 and len(receiver.events(expired["id"])) == 2)
    wait_for(srv.deliverer.idle)
    types = [e["type"] for e, _, _ in receiver.events(batch["id"])]
    assert sorted(types) == ["batch.completed", "batch.created"]
    assert [e["type"] for e, _, _ in receiver.events(expired["id"])] == ["batch.created", "batch.failed"]
    for event, body, headers in receiver.events():
        assert verified(body, headers, rotated) or event["type"] == "batch.created"
        assert event["id"] == event_id(event["data"]["id"], event["delivery"]["key"])
    assert event_id("b" * 200, "batch.completed").startswith("evt_batch_b") and len(event_id("b" * 200, "x")) == 160
    assert event_id("batch_1", "a..b") == "evt_batch_batch_1_a_b"


def test_terminal_delivery_waits_for_the_gateways_poll(make_sandbox, receiver):
    srv = make_sandbox(poll_seconds=300, speed=600.0)
    with httpx.Client(base_url=srv.base_url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        hook = endpoint(http, receiver.url)
        batch = create(http, endpoint_id=hook["id"], duration=30)
    truth = terminal(srv, batch["id"])
    (event, _, _), = wait_for(lambda: receiver.events(batch["id"]))
    ended = truth["retrieve"]["completed_at"]
    # It passed through finalizing, so the next 2-minute poll (120 s after creation) notices the end.
    assert event["created_at"] == int(ended) and srv.gateway.clock.now() - ended >= 120 - 30 - 1


def test_retry_then_success_keeps_the_event_id(http, srv, receiver):
    receiver.policy = lambda body, headers: 500 if headers["x-phaseo-attempt"] == "1" else 200
    hook = endpoint(http, receiver.url)
    batch = create(http, endpoint_id=hook["id"])
    wait_for(lambda: len(receiver.events(batch["id"])) == 2)
    first, second = receiver.events(batch["id"])
    assert first[0]["id"] == second[0]["id"] and second[0]["delivery"]["attempt"] == 2


def test_deleted_endpoint_gets_nothing(http, srv, receiver):
    hook = endpoint(http, receiver.url)
    batch = create(http, endpoint_id=hook["id"])
    http.delete(f"/webhook-endpoints/{hook['id']}", headers=MGMT)
    terminal(srv, batch["id"])
    wait_for(srv.deliverer.idle)
    assert receiver.events(batch["id"]) == []


@pytest.mark.parametrize("fault", ["duplicate", "drop", "bad_signature", "out_of_order"])
def test_delivery_faults(http, srv, receiver, fault):
    hook = endpoint(http, receiver.url, ["batch.created", "batch.completed"])
    batch = create(http, endpoint_id=hook["id"], faults=fault)
    terminal(srv, batch["id"])
    wait_for(lambda: srv.gateway.stats.get("faults_injected", fault) == 1)
    wait_for(srv.deliverer.idle)
    events = receiver.events(batch["id"])
    types = [e["type"] for e, _, _ in events]
    if fault == "duplicate":
        assert types.count("batch.completed") == 2 or types.count("batch.created") == 2
    elif fault == "drop":
        assert types == ["batch.created"]
    elif fault == "bad_signature":
        assert not verified(events[0][1], events[0][2], hook["signing_secret"])
    else:
        assert types == ["batch.completed", "batch.created"]


def test_retrieve_faults(http, srv):
    batch = create(http, faults="retrieve_429,retrieve_500")
    limited = http.get(f"/batches/{batch['id']}")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert [http.get(f"/batches/{batch['id']}").status_code for _ in range(3)] == [500, 500, 200]


def test_same_seed_same_plans(make_sandbox):
    plans = []
    for _ in range(2):
        srv = make_sandbox(seed=42, speed=1.0)
        with httpx.Client(base_url=srv.base_url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
            ids = [http.post("/batches", json={"prompts": list("abc")}).json()["id"] for _ in range(5)]
        plans.append([srv.gateway.truth(i)["sandbox"]["outcome"] for i in ids])
    assert plans[0] == plans[1]


# -- command line -------------------------------------------------------------------


def test_cli_refuses_bad_options_and_documents_all():
    run = [sys.executable, "-m", "aistats_hooks.sandbox"]
    bad = subprocess.run(run + ["--api-key", "k", "--faults", "gremlins=1"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode != 0 and "gremlins" in bad.stderr
    helped = subprocess.run(run + ["--help"], capture_output=True, text=True, timeout=60)
    for option in ("--port", "--api-key", "--speed", "--seed", "--faults", "--poll-seconds", "--batches-disabled",
                   "--insufficient-funds", "--results-unavailable", "--allow-inline-webhooks",
                   "--accept-unknown-files"):
        assert option in helped.stdout


@pytest.mark.slow
def test_cli_serves_until_terminated():
    process = subprocess.Popen(
        [sys.executable, "-m", "aistats_hooks.sandbox", "--port", "0", "--api-key", "k", "--speed", "60"],
        stderr=subprocess.PIPE, text=True)
    try:
        base_url = re.search(r"(http://\S+/v1)", process.stderr.readline()).group(1)
        response = httpx.get(base_url + "/batches", headers={"Authorization": "Bearer k"})
        assert response.status_code == 200 and response.json()["data"] == []
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
