"""The SDK against the sandbox gateway (real HTTP): managed endpoints, batches naming them, results.

The sandbox answers as the gateway does (managed webhook endpoints, flat/nested errors, results
JSONL with 409 until terminal and a limit of 10 downloads per batch per 30 minutes).
"""

from __future__ import annotations

import json
import threading

import pytest
from werkzeug.wrappers import Request, Response

from aistats_hooks.errors import InvalidRequestError, NotFoundError, RateLimitError, ResultsNotReady, SignatureError
from aistats_hooks.sandbox import SandboxServer
from aistats_hooks.sdk import AIStats, iter_results_file
from aistats_hooks.rules.signatures import verify_signature
from tests import helpers

API_KEY = "sk_sdk_sandbox"
TERMINAL = {"completed", "failed", "cancelled", "expired"}


class Inbox:
    """A loopback receiver that records every delivery (raw body and headers)."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[bytes, dict[str, str]]] = []
        self._lock = threading.Lock()
        self.served = helpers.Served(self._app)
        self.url = self.served.url + "/hook"

    @Request.application
    def _app(self, request: Request) -> Response:
        with self._lock:
            self.deliveries.append((request.get_data(), {k.lower(): v for k, v in request.headers.items()}))
        return Response("ok")

    def of_type(self, event_type: str) -> list[tuple[bytes, dict[str, str]]]:
        with self._lock:
            return [d for d in self.deliveries if d[1].get("x-phaseo-event-type") == event_type]


def verifies(delivery: tuple[bytes, dict[str, str]], secret: str) -> bool:
    try:
        verify_signature(delivery[0], delivery[1], [secret])
    except SignatureError:
        return False
    return True


@pytest.fixture
def inbox():
    box = Inbox()
    yield box
    box.served.stop()


@pytest.fixture(params=[False, True], ids=["files", "results-route"])
def srv(request):
    # Without the results route (as the gateway's source) and with it: results read the same either way.
    server = SandboxServer(api_key=API_KEY, speed=2400.0, seed=7, results_route=request.param).start()
    yield server
    server.stop()


@pytest.fixture
def client(srv):
    with AIStats(API_KEY, srv.base_url, timeout=10) as sdk:
        yield sdk


@pytest.fixture
def mclient(srv):
    """The management-key client: the only one /v1/webhook-endpoints accepts."""
    with AIStats(srv.management_key, srv.base_url, timeout=10) as sdk:
        yield sdk


def batch_body(endpoint_id: str | None = None, *, prompts: int = 6, duration: str = "120", outcome: str = "completed"):
    body = {"endpoint": "/v1/responses", "completion_window": "24h", "prompts": [f"p{i}" for i in range(prompts)],
            "metadata": {"sandbox_duration_s": duration, "sandbox_outcome": outcome}}
    if endpoint_id:
        body["webhook"] = {"endpoint_id": endpoint_id}
    return body


def wait_terminal(client: AIStats, batch_id: str) -> dict:
    return helpers.wait_for(lambda: (b := client.retrieve_batch(batch_id))["status"] in TERMINAL and b, timeout=20)


def test_endpoint_lifecycle_against_the_sandbox(mclient, inbox):
    client = mclient
    created = client.create_webhook_endpoint(inbox.url, events=["batch.completed", "batch.failed"], name="sdk test")
    secret = created["signing_secret"]
    assert secret.startswith("whsec_") and secret not in repr(created)
    endpoint_id = created["id"]
    assert [e["id"] for e in client.list_webhook_endpoints()["data"]] == [endpoint_id]
    fetched = client.get_webhook_endpoint(endpoint_id)
    assert "signing_secret" not in fetched and fetched["url"] == inbox.url

    assert client.update_webhook_endpoint(endpoint_id, name="renamed")["name"] == "renamed"
    with pytest.raises(NotFoundError):  # the gateway's source has no test route
        client.test_webhook_endpoint(endpoint_id)

    rotated = client.rotate_webhook_endpoint_secret(endpoint_id)
    assert rotated["signing_secret"] != secret and rotated["signing_secret"] not in repr(rotated)

    assert client.delete_webhook_endpoint(endpoint_id)["deleted"] is True
    with pytest.raises(NotFoundError):
        client.get_webhook_endpoint(endpoint_id)


def test_gateway_refusals_map_to_the_tree(client, mclient, srv):
    with pytest.raises(InvalidRequestError) as bad_url:
        mclient.create_webhook_endpoint("http://hooks.example.com/w")
    assert (bad_url.value.status, bad_url.value.reason) == (400, "webhook_url_must_use_https")
    with pytest.raises(InvalidRequestError) as unknown:
        client.create_batch(batch_body("we_does_not_exist"))
    assert unknown.value.reason == "batch_webhook_endpoint_not_found_or_inactive"
    with pytest.raises(NotFoundError) as missing:
        client.retrieve_batch("batch_01JZ000000000000000000NOPE")
    assert missing.value.code == "not_found" and missing.value.reason == "batch_not_found_or_not_owned"
    with pytest.raises(NotFoundError):
        client.stream_results("batch_01JZ000000000000000000NOPE")


def test_batch_naming_an_endpoint_is_delivered_and_its_results_stream(client, mclient, inbox, tmp_path):
    endpoint = mclient.create_webhook_endpoint(inbox.url)
    batch = client.create_batch(batch_body(endpoint["id"], prompts=6))
    done = wait_terminal(client, batch["id"])
    assert done["status"] == "completed"
    completed = helpers.wait_for(lambda: inbox.of_type("batch.completed"), timeout=20)
    assert verifies(completed[0], endpoint["signing_secret"])
    assert json.loads(completed[0][0])["data"]["id"] == batch["id"]

    rows = list(client.stream_results(batch["id"]))
    assert len(rows) == done["request_counts"]["total"] == 6
    assert len({row["custom_id"] for row in rows}) == 6

    target = tmp_path / "results.jsonl"
    assert client.download_results(batch["id"], target) == target.stat().st_size > 0
    assert list(iter_results_file(target)) == rows
    output = tmp_path / "output.jsonl"
    assert client.download_file(done["output_file_id"], output) == output.stat().st_size
    output_rows = list(iter_results_file(output))
    assert output_rows == rows[:len(output_rows)]  # results are the output file's rows, then the error file's
    assert len(output_rows) == done["request_counts"]["completed"]


def test_results_of_a_running_batch_are_not_ready(client, srv):
    batch = client.create_batch(batch_body(prompts=2, duration="100000"))
    with pytest.raises(ResultsNotReady) as early:
        client.stream_results(batch["id"])
    assert (early.value.code, early.value.reason) == ("not_ready", "batch_not_terminal")
    # The route answers 409 itself where it is served; without it, the retrieve says the batch runs.
    assert early.value.status == (409 if srv.gateway.results_route else None)


def test_results_read_through_files_are_not_rate_limited(client, srv):
    # Where the route is served, its 10 downloads per 30 minutes apply; /v1/files/{id}/content has no limit.
    batch = client.create_batch(batch_body(prompts=2, duration="30"))
    wait_terminal(client, batch["id"])
    for _ in range(10):
        with client.stream_results(batch["id"]) as rows:
            assert len(list(rows)) == 2
    if srv.gateway.results_route:
        with pytest.raises(RateLimitError) as limited:
            client.stream_results(batch["id"])
        assert limited.value.status == 429 and limited.value.retry_after and limited.value.retry_after > 0
    else:
        assert len(list(client.stream_results(batch["id"]))) == 2
