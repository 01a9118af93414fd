"""Managed webhook endpoints over real HTTP: what each method sends, and the secret kept out of reprs.

A scripted loopback server (tests/sdk_stub.py) answers as the gateway's
routes/v1/control/webhook-endpoints.ts does; the same methods run against the sandbox in
test_sdk_sandbox.py once it serves the endpoints.
"""

from __future__ import annotations

import io
import logging
import pprint

import pytest

from aistats_hooks.errors import InvalidRequestError, NotFoundError
from aistats_hooks.sdk import AIStats, SecretBearing
from tests.sdk_stub import Reply, StubGateway

KEY = "sk_test_endpoints"
SECRET = "whsec_Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0"
NEW_SECRET = "whsec_bmV3c2VjcmV0bmV3c2VjcmV0bmV3c2VjcmV0"
ENDPOINT = {
    "id": "we_01", "workspaceId": "ws_1", "name": "Async webhooks", "url": "https://hooks.example.com/w",
    "status": "active", "events": ["batch.completed", "batch.failed"], "hasSecret": True,
    "createdBy": None, "createdAt": "2026-12-01T00:00:00+00:00", "updatedAt": None, "deletedAt": None,
}


@pytest.fixture
def gateway():
    routes = {
        ("POST", "/v1/webhook-endpoints"): lambda s: Reply.json(dict(ENDPOINT, signing_secret=SECRET), 201),
        ("GET", "/v1/webhook-endpoints"): lambda s: Reply.json({"object": "list", "data": [ENDPOINT]}),
        ("GET", "/v1/webhook-endpoints/we_01"): lambda s: Reply.json(ENDPOINT),
        ("PATCH", "/v1/webhook-endpoints/we_01"): lambda s: Reply.json(dict(ENDPOINT, **s.json())),
        ("DELETE", "/v1/webhook-endpoints/we_01"):
            lambda s: Reply.json({"id": "we_01", "object": "webhook_endpoint", "deleted": True}),
        ("POST", "/v1/webhook-endpoints/we_01/rotate-secret"):
            lambda s: Reply.json(dict(ENDPOINT, signing_secret=NEW_SECRET)),
        ("POST", "/v1/webhook-endpoints/we_01/test"):
            lambda s: Reply.json({"ok": True, "status_code": 200, "event_id": "evt_test_1", "error": None,
                                  "response_body_preview": "ok"}),
        ("GET", "/v1/webhook-endpoints/we_gone"):
            lambda s: Reply.json({"error": {"type": "not_found", "message": "Webhook endpoint not found."}}, 404),
    }
    with StubGateway(routes) as stub:
        yield stub


@pytest.fixture
def client(gateway):
    with AIStats(KEY, gateway.base_url, timeout=5) as sdk:
        yield sdk


def test_create_sends_url_events_and_name_and_returns_the_secret(client, gateway):
    created = client.create_webhook_endpoint("https://hooks.example.com/w", events=["batch.completed"], name="prod")
    assert created["signing_secret"] == SECRET and created["id"] == "we_01"
    sent = gateway.seen[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/webhook-endpoints")
    assert sent.json() == {"url": "https://hooks.example.com/w", "events": ["batch.completed"], "name": "prod"}
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    client.create_webhook_endpoint("https://hooks.example.com/w")
    assert gateway.seen[-1].json() == {"url": "https://hooks.example.com/w"}  # the gateway's defaults apply


def test_the_signing_secret_never_shows_in_repr_str_print_or_logs(client, caplog):
    created = client.create_webhook_endpoint("https://hooks.example.com/w")
    rotated = client.rotate_webhook_endpoint_secret("we_01")
    assert isinstance(created, SecretBearing) and rotated["signing_secret"] == NEW_SECRET
    for answer, secret in ((created, SECRET), (rotated, NEW_SECRET)):
        printed = io.StringIO()
        print(answer, file=printed)
        with caplog.at_level(logging.DEBUG):
            logging.getLogger("test").info("endpoint %s / %r", answer, answer)
        for text in (repr(answer), str(answer), f"{answer}", printed.getvalue(), pprint.pformat(answer), caplog.text):
            assert secret not in text and "[redacted]" in text
        assert answer == dict(answer) and "we_01" in repr(answer)


def test_list_get_update_delete_and_test(client, gateway):
    assert client.list_webhook_endpoints() == {"object": "list", "data": [ENDPOINT]}
    client.list_webhook_endpoints(limit=10, offset=20, include_deleted=True)
    assert gateway.seen[-1].path == "/v1/webhook-endpoints?limit=10&offset=20&include_deleted=true"
    assert client.get_webhook_endpoint("we_01") == ENDPOINT
    updated = client.update_webhook_endpoint("we_01", url="https://hooks.example.com/v2", status="disabled")
    assert (updated["url"], updated["status"]) == ("https://hooks.example.com/v2", "disabled")
    assert gateway.seen[-1].method == "PATCH"
    assert gateway.seen[-1].json() == {"url": "https://hooks.example.com/v2", "status": "disabled"}
    client.update_webhook_endpoint("we_01", events=["batch.failed"], name="renamed")
    assert gateway.seen[-1].json() == {"events": ["batch.failed"], "name": "renamed"}
    assert client.delete_webhook_endpoint("we_01")["deleted"] is True
    assert gateway.seen[-1].method == "DELETE"
    tested = client.test_webhook_endpoint("we_01")
    assert tested["ok"] is True and gateway.seen[-1].path == "/v1/webhook-endpoints/we_01/test"


def test_unknown_endpoint_is_not_found(client):
    with pytest.raises(NotFoundError) as missing:
        client.get_webhook_endpoint("we_gone")
    assert (missing.value.status, missing.value.code) == (404, "not_found")


@pytest.mark.parametrize("bad_id", ["", ".", "..", "we/01", "../we_01", None])
def test_bad_endpoint_ids_are_refused_before_sending(client, gateway, bad_id):
    calls = [
        client.get_webhook_endpoint, client.delete_webhook_endpoint, client.rotate_webhook_endpoint_secret,
        client.test_webhook_endpoint, lambda i: client.update_webhook_endpoint(i, name="x"),
    ]
    for call in calls:
        with pytest.raises(InvalidRequestError) as refused:
            call(bad_id)
        assert refused.value.reason == "invalid_id" and not isinstance(refused.value, ValueError)
    assert gateway.seen == []


@pytest.mark.parametrize(
    "call, reason",
    [
        (lambda c: c.create_webhook_endpoint(""), "webhook_url_required"),
        (lambda c: c.create_webhook_endpoint(None), "webhook_url_required"),
        (lambda c: c.create_webhook_endpoint("https://h.example", events="batch.completed"), "invalid_events"),
        (lambda c: c.create_webhook_endpoint("https://h.example", events=[""]), "invalid_events"),
        (lambda c: c.create_webhook_endpoint("https://h.example", name="x" * 121), "invalid_webhook_endpoint_name"),
        (lambda c: c.update_webhook_endpoint("we_01"), "nothing_to_update"),
        (lambda c: c.update_webhook_endpoint("we_01", status="deleted"), "invalid_status"),
    ],
)
def test_bad_arguments_are_refused_before_sending(client, gateway, call, reason):
    with pytest.raises(InvalidRequestError) as refused:
        call(client)
    assert refused.value.reason == reason and refused.value.status is None
    assert gateway.seen == []
