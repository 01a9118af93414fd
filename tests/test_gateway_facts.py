"""Facts of the gateway's source the sandbox answers by, and the service's handling of them.

Results without the results route (the gateway serves files only), expired batches announced as
batch.failed, endpoint and batch webhook event names, signing secrets, deliveries rebuilt per
attempt, and provider refusals passed through.
"""

from __future__ import annotations

import json
import re
import threading
import types

import httpx
import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from aistats_hooks.handlers import HandlerContext
from aistats_hooks.sandbox import SandboxServer
from aistats_hooks.sdk import AIStats
from aistats_hooks.sdk._validate import file_segment
from aistats_hooks.errors import ConflictError, InvalidRequestError
from tests import helpers
from workers.handler_jobs import _results as handler_results

API_KEY = "sk_sandbox_facts"
ROWS = b"".join(b'{"custom_id":"row-%d","body":{"model":"google/gemini-2.5-flash","input":"q%d"}}\n' % (n, n)
                for n in range(3))


class Inbox:
    """A loopback webhook receiver that records bodies; ``status`` says how it answers each attempt."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.status = lambda attempt: 200
        self._lock = threading.Lock()
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=lambda: self.server.serve_forever(poll_interval=0.05), daemon=True).start()

    @Request.application
    def _app(self, request: Request) -> Response:
        body = json.loads(request.get_data())
        with self._lock:
            self.bodies.append(body)
        return Response("ok", status=self.status(body["delivery"]["attempt"]))

    def of(self, batch_id: str) -> list[dict]:
        with self._lock:
            return [b for b in self.bodies if b["data"].get("id") == batch_id]


@pytest.fixture
def inbox():
    box = Inbox()
    yield box
    box.server.shutdown()
    box.server.server_close()


@pytest.fixture(params=[False, True], ids=["no-results-route", "results-route"])
def srv(request):
    server = SandboxServer(api_key=API_KEY, speed=1200.0, seed=9, poll_seconds=0, fast_poll_seconds=0,
                           results_route=request.param).start()
    yield server
    server.stop()


@pytest.fixture
def client(srv):
    with AIStats(API_KEY, srv.base_url, timeout=10) as sdk:
        yield sdk


@pytest.fixture
def manager(srv):
    with AIStats(srv.management_key, srv.base_url, timeout=10) as sdk:
        yield sdk


def run_batch(client, *, outcome="completed", duration="60", webhook=None) -> dict:
    file_id = client.upload_file(ROWS, filename="in.jsonl")["id"]
    body = {"endpoint": "/v1/responses", "input_file_id": file_id, "completion_window": "24h",
            "model": "google/gemini-2.5-flash",
            "metadata": {"sandbox_outcome": outcome, "sandbox_duration_s": duration}}
    if webhook:
        body["webhook"] = webhook
    return client.create_batch(body)


def finished(client, batch_id) -> dict:
    return helpers.wait_for(lambda: (b := client.retrieve_batch(batch_id))["status"] in
                            ("completed", "failed", "expired", "cancelled") and b, timeout=20)


# -- 3. results without the results route --------------------------------------------------------


def test_google_output_files_are_named_with_a_slash_and_read_escaped(client, srv, tmp_path):
    done = finished(client, run_batch(client)["id"])
    assert done["output_file_id"].startswith("files/")  # Google's output file is a name
    assert file_segment(done["output_file_id"], "file_id") == done["output_file_id"].replace("/", "%2F")
    target = tmp_path / "out.jsonl"
    assert client.download_file(done["output_file_id"], target) == target.stat().st_size > 0
    with pytest.raises(InvalidRequestError):
        file_segment("files/../secrets", "file_id")


def test_handlers_ctx_results_read_the_same_rows_with_or_without_the_route(client, srv, tmp_path):
    done = finished(client, run_batch(client)["id"])
    ctx = types.SimpleNamespace(client=client)
    hctx = HandlerContext(batch_id=done["id"], transition="batch.completed", handler="h", change_id="1-0", attempt=1,
                          idempotency_key="k", log=None, _results=lambda: handler_results(ctx, done["id"],
                                                                                           str(tmp_path)))
    rows = list(hctx.results())
    assert [r["custom_id"] for r in rows] == ["row-0", "row-1", "row-2"]
    assert list(hctx.results()) == rows  # read from the downloaded file the second time
    # Where the route answers it is used; after its 404 the client reads the files and stops asking.
    assert client._results_route is srv.gateway.results_route


def test_the_cli_results_command_with_or_without_the_route(client, srv, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from aistats_hooks.cli import cli

    done = finished(client, run_batch(client)["id"])
    env = {"AISTATS_API_KEY": API_KEY, "AISTATS_BASE_URL": srv.base_url, "REDIS_URL": "redis://127.0.0.1:1/0"}
    result = CliRunner().invoke(cli, ["results", done["id"]], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["custom_id"] for line in result.stdout.splitlines()] == ["row-0", "row-1", "row-2"]


# -- 6. expired ------------------------------------------------------------------------------------


def test_expired_is_delivered_as_batch_failed_and_batch_expired_gets_nothing(client, manager, srv, inbox):
    failed_hook = manager.create_webhook_endpoint(inbox.url, events=["batch.failed"])
    expired_hook = manager.create_webhook_endpoint(inbox.url, events=["batch.expired"])
    announced = run_batch(client, outcome="expired", webhook={"endpoint_id": failed_hook["id"]})
    silent = run_batch(client, outcome="expired", webhook={"endpoint_id": expired_hook["id"]})
    running = run_batch(client, duration="100000")
    helpers.wait_for(lambda: inbox.of(announced["id"]), timeout=20)
    finished(client, silent["id"])
    helpers.wait_for(srv.deliverer.idle, timeout=20)
    (event,) = inbox.of(announced["id"])
    assert event["type"] == "batch.failed"
    assert (event["data"]["status"], event["data"]["lifecycle_status"]) == ("expired", "expired")
    assert inbox.of(silent["id"]) == []
    assert client.retrieve_batch(announced["id"])["status"] == "expired"
    got = helpers.wait_for(lambda: (b := client.retrieve_batch(running["id"]))["status"] == "in_progress" and b)
    assert got["lifecycle_status"] == "running"


# -- 10. smaller facts -----------------------------------------------------------------------------


def test_endpoint_ids_secrets_and_event_names(manager, srv, inbox):
    created = manager.create_webhook_endpoint(inbox.url, events=["Batch.Completed", "batch.whatever"])
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", created["id"])
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", created["signing_secret"])  # 32 bytes, base64url, no padding
    assert created["events"] == ["batch.completed", "batch.whatever"]
    assert srv.deliverer.timeout == 30.0  # DEFAULT_WEBHOOK_DELIVERY_TIMEOUT_MS


def test_batch_webhook_events_drop_unknown_names_and_refuse_an_all_invalid_list(client, manager, inbox):
    hook = manager.create_webhook_endpoint(inbox.url)
    kept = run_batch(client, webhook={"endpoint_id": hook["id"], "events": ["batch.completed", "nope"]})
    assert kept["id"]
    # Non-strings are dropped at the gateway too (our SDK refuses them before sending).
    raw = httpx.post(f"{client.base_url}/batches", headers={"Authorization": f"Bearer {API_KEY}"},
                     json={"prompts": ["a"], "webhook": {"endpoint_id": hook["id"], "events": ["Batch.Failed", 7]}})
    assert raw.status_code == 200, raw.text
    file_id = client.upload_file(ROWS, filename="in.jsonl")["id"]
    with pytest.raises(InvalidRequestError) as refused:
        client.create_batch({"endpoint": "/v1/responses", "input_file_id": file_id, "completion_window": "24h",
                             "webhook": {"endpoint_id": hook["id"], "events": ["nope", "batch.never"]}})
    assert refused.value.reason == "invalid_batch_webhook"


def test_rotation_is_immediate_and_each_attempt_is_rebuilt(client, manager, srv, inbox):
    hook = manager.create_webhook_endpoint(inbox.url, events=["batch.completed"])
    rotated = manager.rotate_webhook_endpoint_secret(hook["id"])["signing_secret"]
    secret = srv.gateway.endpoints.get(hook["id"]).secret
    assert secret == rotated  # the gateway signs with the new secret from now on
    inbox.status = lambda attempt: 500 if attempt == 1 else 200
    batch = run_batch(client, webhook={"endpoint_id": hook["id"]})
    first, second = helpers.wait_for(lambda: len(b := inbox.of(batch["id"])) >= 2 and b[:2], timeout=20)
    assert (first["delivery"]["attempt"], second["delivery"]["attempt"]) == (1, 2)
    assert first["id"] == second["id"]
    # The retry's envelope was built again: created_at is the time of the attempt, not of the first one.
    assert second["created_at"] > first["created_at"]


def test_cancel_has_no_state_check_of_its_own_the_providers_refusal_passes_through(client):
    done = finished(client, run_batch(client)["id"])
    with pytest.raises(ConflictError) as refused:
        client.cancel_batch(done["id"])
    assert refused.value.status == 409 and "Cannot cancel a batch with status 'completed'" in str(refused.value)
    assert refused.value.code == "invalid_request_error"
    raw = httpx.post(f"{client.base_url}/batches/{done['id']}/cancel", headers={"Authorization": f"Bearer {API_KEY}"})
    assert raw.json() == {"error": {"message": "Cannot cancel a batch with status 'completed'.",
                                    "type": "invalid_request_error", "param": None, "code": None}}


def test_provider_errors_on_retrieve_pass_through_with_the_providers_status_and_body(client):
    from aistats_hooks.errors import RateLimitError, UpstreamUnavailable

    file_id = client.upload_file(ROWS, filename="in.jsonl")["id"]
    batch = client.create_batch({"endpoint": "/v1/responses", "input_file_id": file_id, "completion_window": "24h",
                                 "metadata": {"sandbox_faults": "retrieve_429,retrieve_500"}})
    with pytest.raises(RateLimitError) as limited:
        client.retrieve_batch(batch["id"])
    assert (limited.value.status, limited.value.reason, limited.value.retry_after) == (429, "rate_limit_exceeded", 1.0)
    raw = httpx.get(f"{client.base_url}/batches/{batch['id']}", headers={"Authorization": f"Bearer {API_KEY}"})
    assert raw.status_code == 500 and raw.json()["error"]["type"] == "server_error"  # OpenAI's body, unchanged
    with pytest.raises(UpstreamUnavailable) as failing:
        client.retrieve_batch(batch["id"])
    assert (failing.value.status, failing.value.code) == (500, "server_error")
    assert client.retrieve_batch(batch["id"])["id"] == batch["id"]
