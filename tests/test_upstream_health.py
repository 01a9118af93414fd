"""The gateway's state as the workers met it: on /readyz, /metrics and the dashboard.

A real worker reconciles against the scripted gateway over HTTP: a 401 makes the state
``failing`` with reason ``key_refused``, a later answer makes it ``ok`` again; readiness
stays 200 throughout (it is about this service).
"""

from __future__ import annotations

import re

import pytest

from aistats_hooks import upstream_health
from aistats_hooks.errors import AuthenticationError, NotFoundError, RateLimitError, UpstreamUnavailable
from tests.helpers import dashboard_login, make_event, run_worker, signed

SECRET = "s" * 32


def auth(settings) -> dict:
    return {"Authorization": f"Bearer {settings.query_api_token}"}


@pytest.fixture
def web(settings, worker_env):
    from aistats_hooks.web import create_app, get_store

    app = create_app(settings.replace(session_secret=SECRET))
    upstream_health._last_ok.clear()
    return app.test_client(), get_store(app)


def deliver(client, batch_id: str) -> None:
    body, headers = signed(make_event(batch_id))
    assert client.post("/webhooks/aistats", data=body, headers=headers).status_code == 202


def test_reasons_say_what_the_gateway_did():
    assert upstream_health.reason_of(AuthenticationError("no", status=401)) == "key_refused"
    assert upstream_health.reason_of(RateLimitError("slow down", status=429)) == "rate_limited"
    assert upstream_health.reason_of(UpstreamUnavailable("timed out")) == "unreachable"
    assert upstream_health.reason_of(UpstreamUnavailable("boom", status=502)) == "upstream_error"
    assert upstream_health.reason_of(NotFoundError("no such batch", status=404)) is None  # about one batch


def test_a_refused_key_shows_then_clears(web, settings, upstream):
    client, store = web
    ready = client.get("/readyz").get_json()
    assert ready["upstream"]["state"] == "unknown"

    upstream.answer("hb1", (401, {"error": {"message": "bad key", "type": "authentication_error"}}))
    deliver(client, "hb1")
    run_worker(store)
    ready = client.get("/readyz")
    assert ready.status_code == 200  # readiness is about this service
    health = ready.get_json()["upstream"]
    assert (health["state"], health["reason"]) == ("failing", "key_refused")
    assert health["last_success"] is None and health["last_error"] > 0
    metrics = client.get("/metrics", headers=auth(settings)).get_data(as_text=True)
    assert re.search(r"^aistats_upstream_up 0\.0$", metrics, re.M)
    assert 'aistats_upstream_last_error_timestamp_seconds{reason="key_refused"}' in metrics

    upstream.answer("hb2", (200, make_event("hb2")["data"]))
    deliver(client, "hb2")
    run_worker(store)
    health = client.get("/readyz").get_json()["upstream"]
    assert health["state"] == "ok" and health["last_success"] > health["last_error"]
    metrics = client.get("/metrics", headers=auth(settings)).get_data(as_text=True)
    assert re.search(r"^aistats_upstream_up 1\.0$", metrics, re.M)


def test_the_dashboard_says_the_gateway_refused_the_key(web, settings):
    client, store = web
    upstream_health.failed(store.redis, store.keys, AuthenticationError("bad key", status=401))
    dashboard_login(client, settings.query_api_token)
    html = client.get("/dashboard/").get_data(as_text=True)
    tile = html[html.index('id="tile-upstream"'):]
    tile = tile[:tile.index("</div>")]
    assert "failing" in tile and "API key refused" in tile
