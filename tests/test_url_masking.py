"""A destination URL's password, bare token and query values never show: config, API, CLI, dashboard, logs.

One function masks them all (``aistats_hooks.urls.masked``); each place that
shows a destination is checked here with a URL carrying all three.
"""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from click.testing import CliRunner

from aistats_hooks import logs

from aistats_hooks.effects import forwarding
from aistats_hooks.forward_settings import generate_secret
from aistats_hooks.urls import masked
from tests.helpers import make_event
from tests.test_handlers import deliver
from workers import context

SECRET = generate_secret()
PASSWORD, TOKEN, QUERY_KEY = "pw-Secret-1234", "ghp_Token5678abcd", "qk-Secret-9999"
URL = f"https://hook:{PASSWORD}@hooks.example:8443/in?key={QUERY_KEY}&v=2"
TOKEN_URL = f"https://{TOKEN}@alerts.example/in"
SHOWN = "https://hook:***@hooks.example:8443/in?key=***&v=***"
SESSION_SECRET = "session-secret-for-tests-0123456789"


def leaks(text: str) -> list[str]:
    return [s for s in (PASSWORD, TOKEN, QUERY_KEY) if s in text]


@pytest.fixture
def configured(settings, worker_env, monkeypatch):
    """Forwarding to URL, alerts to TOKEN_URL; one stored message of batch mb1 (with an attempt)."""
    env = {"AISTATS_FORWARD_URLS": URL, "AISTATS_FORWARD_SECRET": SECRET, "AISTATS_ALERT_URLS": TOKEN_URL,
           "AISTATS_SESSION_SECRET": SESSION_SECRET}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    context.current.cache_clear()
    settings = settings.replace(forward_urls=(URL,), forward_secret=SECRET, alert_urls=(TOKEN_URL,),
                                session_secret=SESSION_SECRET)
    from aistats_hooks.web import create_app, get_store

    app = create_app(settings)
    store = get_store(app)
    assert deliver(app, make_event("mb1")).status_code in (200, 202)  # the batch is known: its page exists
    forwarding.ensure_group(store.redis, store.keys)
    store.redis.xadd(store.keys.changes, {"batch_id": "mb1", "transition": "batch.completed", "at": "2026-06-17T16:00:00Z"})
    forwarding.dispatch(store.redis, store.keys, store.queue, settings.replace(forward_events=("batch.completed",)))
    (message,) = forwarding.messages(store.redis, store.keys, batch_id="mb1")
    forwarding.record_attempt(store.redis, store.keys, message["id"], {"at": "x", "status_code": 503}, "retrying")
    forwarding.disable(store.redis, store.keys, URL, "410 Gone at x")
    return app, store, settings, env


def cli(env: dict, *args: str):
    from aistats_hooks.cli import cli as main

    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_masked_keeps_what_identifies_the_destination():
    assert masked(URL) == SHOWN
    assert masked(TOKEN_URL) == "https://***@alerts.example/in"
    assert masked("https://hooks.example/in") == "https://hooks.example/in"


def test_the_config_command_masks_destinations(configured):
    *_, env = configured
    result = cli(env, "config")
    assert result.exit_code == 0 and not leaks(result.output)
    assert f"AISTATS_FORWARD_URLS={SHOWN}" in result.output
    assert "AISTATS_ALERT_URLS=https://***@alerts.example/in" in result.output
    shown = json.loads(cli(env, "--json", "config").output)
    assert not leaks(json.dumps(shown))


def test_the_forwarding_api_masks_destinations(configured):
    app, _store, settings, _env = configured
    resp = app.test_client().get("/forwarding/messages", headers={"Authorization": f"Bearer {settings.query_api_token}"})
    assert resp.status_code == 200 and not leaks(resp.get_data(as_text=True))
    assert resp.json["data"][0]["destination"] == SHOWN
    assert resp.json["destinations"] == [{"url": SHOWN, "disabled": True}]


def test_the_forwarding_command_masks_destinations(configured):
    *_, env = configured
    for args in (("forwarding",), ("--json", "forwarding"), ("forwarding", "enable", URL)):
        result = cli(env, *args)
        assert result.exit_code == 0 and not leaks(result.output), result.output
        assert SHOWN in result.output


def test_the_dashboard_masks_destinations(configured):
    app, _store, settings, _env = configured
    client = app.test_client()
    page = client.get("/dashboard/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    form = {"token": settings.query_api_token} | ({"csrf_token": token.group(1)} if token else {})
    assert client.post("/dashboard/login", data=form).status_code == 302
    html = client.get("/dashboard/batches/mb1").get_data(as_text=True)
    assert "hooks.example:8443/in" in html and "batch.completed" in html  # the message is listed
    assert not leaks(html)


def test_log_lines_never_carry_a_destination_secret(configured):
    _app, _store, settings, _env = configured
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.RedactFilter(logs.secrets_of(settings)))
    log = logging.getLogger("tests.url_masking")
    log.addHandler(handler)
    try:
        log.warning("posting to %s and alerting %s", URL, TOKEN_URL)  # whoever logs a URL whole
    finally:
        log.removeHandler(handler)
    assert not leaks(stream.getvalue()) and "hooks.example" in stream.getvalue()
    assert not leaks(" ".join(logs.Redactor(logs.secrets_from_env(_env))(u) for u in (URL, TOKEN_URL)))
