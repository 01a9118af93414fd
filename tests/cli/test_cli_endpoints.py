"""Managed webhook endpoints from the CLI: create, list, test, rotate-secret, delete.

Against the real sandbox gateway and the real receiver served on loopback:
the secret the gateway returns is stored where every receiver reads it, is
never printed, and a rotation keeps both secrets verifying for the grace
period, without restarting the receiver.
"""

from __future__ import annotations

import json
import os
import stat

import httpx

from aistats_hooks import endpoint_secrets
from tests.cli.conftest import one_line_error, run
from tests.helpers import make_event, signed, wait_for


def _stored(store) -> list[dict]:
    return endpoint_secrets.describe(store.redis, store.settings.key_prefix)


def _post(receiver, event, secret):
    body, headers = signed(event, secret)
    return httpx.post(receiver[0].url + "/webhooks/aistats", content=body, headers=headers)


def test_create_stores_the_secret_and_never_prints_it(env, store, tmp_path):
    secret_file = tmp_path / "secret"
    result = run(env, "endpoints", "create", "--url", env["PUBLIC_BASE_URL"] + "/webhooks/aistats",
                 "--events", "batch.completed,batch.failed", "--name", "ci", "--secret-file", str(secret_file))
    assert result.exit_code == 0, result.output
    endpoint_id = result.stdout.split()[1]
    assert len(endpoint_id) == 36 and f"AISTATS_WEBHOOK_ENDPOINT_ID={endpoint_id}" in result.stdout  # a UUID
    secret = secret_file.read_text().strip()
    assert secret.startswith("whsec_") and secret not in result.output
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    assert {e["endpoint_id"] for e in _stored(store)} >= {endpoint_id, env["AISTATS_WEBHOOK_ENDPOINT_ID"]}
    listed = json.loads(run(env, "--json", "endpoints", "list").stdout)["data"]
    mine = next(e for e in listed if e["id"] == endpoint_id)
    assert mine["secret_stored"] is True and mine["events"] == ["batch.completed", "batch.failed"]
    assert "signing_secret" not in json.dumps(listed)


def test_endpoint_test_delivery_reaches_and_verifies_at_the_receiver(env, store, sandbox):
    endpoint_id = env["AISTATS_WEBHOOK_ENDPOINT_ID"]
    result = run(env, "--json", "endpoints", "test", endpoint_id)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    # The gateway has no test route: the CLI signed the event with the endpoint's stored secret and posted
    # it to the endpoint's URL itself; the receiver verified it (a refusal would be counted as a rejection).
    assert answer["ok"] is True and answer["status_code"] == 202 and answer["url"].endswith("/webhooks/aistats")
    assert not store.counters("rejected")
    assert "gateway error" in one_line_error(run(env, "endpoints", "test", "we_nope"))
    # No stored secret for an endpoint (created elsewhere): one line saying what to run.
    other = sandbox.gateway.endpoints.create({"url": env["PUBLIC_BASE_URL"] + "/webhooks/aistats"})
    line = one_line_error(run(env, "endpoints", "test", other.id))
    assert "no signing secret stored" in line and f"rotate-secret {other.id}" in line


def test_rotate_secret_keeps_old_and_new_verifying_until_the_grace_ends(env, store, receiver):
    endpoint_id = env["AISTATS_WEBHOOK_ENDPOINT_ID"]
    old = endpoint_secrets.newest(store.redis, store.settings.key_prefix)
    # The receiver has loaded the old secret already (a delivery signed with it is accepted).
    assert _post(receiver, make_event("b_rot1"), old).status_code == 202
    result = run(env, "--json", "rotate-secret", endpoint_id, "--grace", "3600")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert "signing_secret" not in answer and len(answer["secrets_retiring"]) == 1
    new = endpoint_secrets.newest(store.redis, store.settings.key_prefix)
    assert new != old and new not in result.output
    # No restart: the receiver re-reads the stored secrets on a mismatch and takes the new one.
    assert wait_for(lambda: _post(receiver, make_event("b_rot2"), new).status_code == 202, timeout=5)
    assert _post(receiver, make_event("b_rot3"), old).status_code == 202  # still in its grace period
    # A zero grace retires the previous secret at once: once the receiver has seen the newest
    # secret (a mismatch re-reads the store), deliveries signed with the retired one are refused.
    assert run(env, "rotate-secret", endpoint_id, "--grace", "0").exit_code == 0
    newest = endpoint_secrets.newest(store.redis, store.settings.key_prefix)
    assert wait_for(lambda: _post(receiver, make_event("b_rot4"), newest).status_code == 202, timeout=5)
    refused = _post(receiver, make_event("b_rot5"), new)
    assert refused.status_code == 401 and refused.json()["reason"] == "mismatch"


def test_delete_retires_the_stored_secret(env, store):
    result = run(env, "--json", "endpoints", "create", "--name", "doomed")
    endpoint_id = json.loads(result.stdout)["id"]
    deleted = json.loads(run(env, "--json", "endpoints", "delete", endpoint_id, "--grace", "0").stdout)
    assert deleted["deleted"] is True and len(deleted["secrets_retiring"]) == 1
    endpoint_secrets.active(store.redis, store.settings.key_prefix)  # drops the retired one
    assert endpoint_id not in {e["endpoint_id"] for e in _stored(store)}


def test_endpoint_errors_are_one_line(env):
    line = one_line_error(run(env, "endpoints", "create", PUBLIC_BASE_URL=None), code=2)
    assert "PUBLIC_BASE_URL" in line
    line = one_line_error(run(env, "endpoints", "create", "--url", "ftp://example.com/hook"))
    assert "validation_error" in line
    line = one_line_error(run(env, "rotate-secret", "we_missing"))
    assert "gateway error" in line
    line = one_line_error(run(env, "endpoints", "create", AISTATS_MANAGEMENT_KEY="phaseo_v1_mk_wrong_123456"))
    assert "phaseo_v1_mk_wrong_123456" not in line and "key_not_found_or_revoked" in line


def test_endpoints_need_the_management_key(env):
    # Missing: one line naming the variable and what it must be.
    line = one_line_error(run(env, "endpoints", "list", AISTATS_MANAGEMENT_KEY=None), code=2)
    assert "AISTATS_MANAGEMENT_KEY" in line and "phaseo_v1_mk_" in line
    # The ordinary key in its place is refused by the gateway (401 management_key_required): one line too.
    line = one_line_error(run(env, "endpoints", "list", AISTATS_MANAGEMENT_KEY=env["AISTATS_API_KEY"]))
    assert "management_key_required" in line and "AISTATS_MANAGEMENT_KEY" in line
    assert env["AISTATS_API_KEY"] not in line
