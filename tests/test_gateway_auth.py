"""The gateway's keys and refusals, as its source answers them (pipeline/before/auth.ts,
routes/v1/control/webhook-endpoints.ts), in the sandbox and in the service.

- /v1/webhook-endpoints takes only a management key; a management key is refused everywhere else;
- the 401s db_error and server_misconfig_missing_pepper are the gateway's passing faults: retried;
- aistats_v1_sk_ keys stop working on 2027-01-01: a warning at start, the reason in the error.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import httpx
import pytest
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from aistats_hooks.config import Settings
from aistats_hooks.errors import AuthenticationError, UpstreamUnavailable
from aistats_hooks.sandbox import SandboxServer
from aistats_hooks.sandbox.auth import LEGACY_KEY_CUTOFF, default_management_key
from aistats_hooks.sdk import AIStats
from aistats_hooks.sdk import _client as sdk_client
from aistats_hooks.web import create_app
from tests.helpers import make_event, run_worker, signed

API_KEY = "phaseo_v1_sk_kid1_sandboxsecret"
MANAGEMENT_KEY = "phaseo_v1_mk_kid2_managementsecret"
LEGACY_KEY = "aistats_v1_sk_kid3_legacysecret"


@pytest.fixture
def srv():
    server = SandboxServer(api_key=API_KEY, management_key=MANAGEMENT_KEY, speed=1200.0, seed=3).start()
    yield server
    server.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def refusal(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error"], body["reason"]


def test_endpoints_take_only_the_management_key_and_the_gateway_refuses_it(srv):
    endpoints, batches = srv.base_url + "/webhook-endpoints", srv.base_url + "/batches"
    assert httpx.get(endpoints, headers=bearer(MANAGEMENT_KEY)).status_code == 200
    assert httpx.get(batches, headers=bearer(API_KEY)).status_code == 200
    assert refusal(httpx.get(endpoints, headers=bearer(API_KEY))) == (401, "unauthorised", "management_key_required")
    assert refusal(httpx.post(endpoints, headers=bearer(API_KEY), json={"url": "https://h.example/x"})) == (
        401, "unauthorised", "management_key_required")
    assert refusal(httpx.get(batches, headers=bearer(MANAGEMENT_KEY))) == (
        401, "unauthorised", "management_key_not_valid_for_gateway")
    wrong_mk = "phaseo_v1_mk_kid2_other"
    assert refusal(httpx.get(endpoints, headers=bearer(wrong_mk))) == (401, "unauthorised", "key_not_found_or_revoked")
    assert refusal(httpx.get(endpoints)) == (401, "unauthorised", "missing_or_invalid_authorization_header")
    # Through our SDK the refusal names the reason and what to use instead.
    with AIStats(API_KEY, srv.base_url) as client, pytest.raises(AuthenticationError) as refused:
        client.list_webhook_endpoints()
    assert refused.value.reason == "management_key_required" and "phaseo_v1_mk_" in str(refused.value)


def test_a_default_management_key_is_derived_and_never_the_api_key():
    with SandboxServer(api_key="sk_x") as server:
        assert server.management_key == default_management_key("sk_x") != "sk_x"
        assert server.management_key.startswith("phaseo_v1_mk_")


def test_the_command_line_takes_both_keys(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "aistats_hooks.sandbox", "--port", "0", "--api-key", API_KEY,
                             "--management-key", MANAGEMENT_KEY], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        base = line.split(" on ", 1)[1].split()[0]
        assert httpx.get(base + "/webhook-endpoints", headers=bearer(MANAGEMENT_KEY)).status_code == 200
        assert refusal(httpx.get(base + "/webhook-endpoints", headers=bearer(API_KEY)))[2] == "management_key_required"
        assert refusal(httpx.get(base + "/batches", headers=bearer(MANAGEMENT_KEY)))[2] == (
            "management_key_not_valid_for_gateway")
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("reason", ["db_error", "server_misconfig_missing_pepper"])
def test_transient_401s_are_retryable_others_are_not(srv, reason):
    with AIStats(API_KEY, srv.base_url) as client:
        srv.gateway.set_auth_fault(reason, 1)
        with pytest.raises(UpstreamUnavailable) as passing:
            client.list_batches()
        assert (passing.value.status, passing.value.reason, passing.value.retryable) == (401, reason, True)
        assert client.list_batches()["data"] == []  # the next call goes through
    with AIStats("phaseo_v1_sk_kid1_wrong", srv.base_url) as client, pytest.raises(AuthenticationError) as refused:
        client.list_batches()
    assert refused.value.reason == "key_not_found_or_revoked" and not refused.value.retryable


def test_legacy_keys_work_until_2027_and_then_name_the_reason():
    with SandboxServer(api_key=LEGACY_KEY) as server, AIStats(LEGACY_KEY, server.base_url) as client:
        server.gateway.legacy_now = LEGACY_KEY_CUTOFF - 1
        assert client.list_batches()["data"] == []
        server.gateway.legacy_now = LEGACY_KEY_CUTOFF
        with pytest.raises(AuthenticationError) as retired:
            client.list_batches()
    assert retired.value.reason == "legacy_key_prefix_retired" and not retired.value.retryable
    assert "legacy_key_prefix_retired" in str(retired.value) and "phaseo_v1_sk_" in str(retired.value)


def test_a_legacy_key_is_warned_about_once_at_start(caplog, monkeypatch):
    monkeypatch.setattr(sdk_client, "_warned_legacy", False)
    with caplog.at_level(logging.WARNING, logger=sdk_client.__name__):
        AIStats(LEGACY_KEY, "http://127.0.0.1:9/v1").close()
        AIStats(LEGACY_KEY, "http://127.0.0.1:9/v1").close()
        AIStats(API_KEY, "http://127.0.0.1:9/v1").close()
    warnings = [r.getMessage() for r in caplog.records if "2027-01-01" in r.getMessage()]
    assert len(warnings) == 1 and "legacy_key_prefix_retired" in warnings[0]
    assert LEGACY_KEY not in caplog.text  # the prefix is named, never the key
    assert "aistats_v1_sk_" in Settings(api_key=LEGACY_KEY).legacy_key_warning()
    assert Settings(api_key=API_KEY).legacy_key_warning() is None


def test_management_key_is_read_and_never_shown():
    settings = Settings.from_env({"AISTATS_MANAGEMENT_KEY": f"  {MANAGEMENT_KEY} "})
    assert settings.require_management_key() == MANAGEMENT_KEY and MANAGEMENT_KEY not in repr(settings)
    with pytest.raises(Exception, match="AISTATS_MANAGEMENT_KEY"):
        Settings.from_env({}).require_management_key()


# -- the service: a transient 401 is retried with backoff, never a dead letter ----------------------


@pytest.fixture
def app(settings, worker_env):
    return create_app(settings)


def test_a_db_error_401_on_retrieve_is_retried_not_failed(app, upstream):
    store = app.extensions["aistats"]
    done = make_event("b_auth")["data"]
    upstream.answer("b_auth", (401, {"error": "unauthorised", "reason": "db_error"}), (200, done))
    body, headers = signed(make_event("b_auth"))
    assert app.test_client().post("/webhooks/aistats", data=body, headers=headers).status_code == 202
    run_worker(store)
    assert FailedJobRegistry(queue=store.queue).count == 0
    registry = ScheduledJobRegistry(queue=store.queue)
    assert registry.count == 1 and "auth_failed" not in store.counters("upstream")
    job = store.queue.fetch_job(registry.get_job_ids()[0])  # run the retry now rather than after its backoff
    registry.remove(job)
    store.queue.enqueue_job(job)
    run_worker(store)
    assert store.get("b_auth")["source"] == "retrieve" and FailedJobRegistry(queue=store.queue).count == 0


def test_a_refused_key_still_fails_fast(app, upstream):
    store = app.extensions["aistats"]
    upstream.answer("b_refused", (401, {"error": "unauthorised", "reason": "legacy_key_prefix_retired"}))
    body, headers = signed(make_event("b_refused"))
    app.test_client().post("/webhooks/aistats", data=body, headers=headers)
    run_worker(store)
    assert FailedJobRegistry(queue=store.queue).count == 1 and ScheduledJobRegistry(queue=store.queue).count == 0


def test_cli_config_says_in_one_line_that_a_legacy_key_retires(monkeypatch):
    from click.testing import CliRunner

    from aistats_hooks.cli import cli

    for name in ("AISTATS_API_KEY", "AISTATS_MANAGEMENT_KEY"):
        monkeypatch.delenv(name, raising=False)
    shown = CliRunner().invoke(cli, ["config"], env={"AISTATS_API_KEY": LEGACY_KEY,
                                                    "AISTATS_MANAGEMENT_KEY": MANAGEMENT_KEY})
    assert shown.exit_code == 0, shown.output
    warnings = [line for line in shown.stdout.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "aistats_v1_sk_" in warnings[0] and "2027-01-01" in warnings[0]
    assert LEGACY_KEY not in shown.output and MANAGEMENT_KEY not in shown.output
    assert "AISTATS_MANAGEMENT_KEY=set" in shown.stdout
    current = CliRunner().invoke(cli, ["config"], env={"AISTATS_API_KEY": API_KEY})
    assert current.exit_code == 0 and "warning: " not in current.stdout
