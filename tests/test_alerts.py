"""Alerts: folded per (kind, subject), resolved once, signed (Standard Webhooks) and received over real HTTP."""

from __future__ import annotations

import base64
import json
import threading

import pytest
from flask import Flask, request
from standardwebhooks import Webhook

from aistats_hooks import dead_letters

from aistats_hooks.effects import alerts
from aistats_hooks.config import Settings
from aistats_hooks.errors import ConfigError
from aistats_hooks.keys import Keys
from aistats_hooks.web import create_app
from tests.helpers import Served, make_event, run_worker, signed

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def test_an_alert_fires_once_folds_repeats_and_resolves_once(redis_client, prefix):
    keys = Keys(prefix)
    first = alerts.observe(redis_client, keys, "dead_letter", "q:f", True, "1 failed", count=1, now=1000)
    assert first and first.status == "firing" and first.count == 1
    alerts.sent(redis_client, keys, first, now=1000)
    assert alerts.observe(redis_client, keys, "dead_letter", "q:f", True, "1 failed", count=1, now=1010) is None
    # More failures within the fold window wait; after it, one alert carries the count.
    assert alerts.observe(redis_client, keys, "dead_letter", "q:f", True, "3 failed", count=3, now=1100) is None
    later = alerts.observe(redis_client, keys, "dead_letter", "q:f", True, "3 failed", count=3, now=1000 + 901)
    assert later and later.count == 3 and later.first_seen == 1000
    assert "3 times since" in later.body(None)["text"]
    alerts.sent(redis_client, keys, later, now=1901)
    # Still active, nothing new: silence, even after the window.
    assert alerts.observe(redis_client, keys, "dead_letter", "q:f", True, count=3, now=5000) is None
    resolve = alerts.observe(redis_client, keys, "dead_letter", "q:f", False, now=5001)
    assert resolve and resolve.status == "resolved"
    assert [a.subject for a in alerts.open_alerts(redis_client, keys)] == ["q:f"]  # until delivered
    alerts.sent(redis_client, keys, resolve, now=5001)
    assert alerts.open_alerts(redis_client, keys) == []
    assert alerts.observe(redis_client, keys, "dead_letter", "q:f", False, now=5002) is None


def test_a_one_shot_alert_is_sent_once(redis_client, prefix):
    keys = Keys(prefix)
    message = alerts.observe(redis_client, keys, "batch_cost", "b1", True, "big", now=1)
    alerts.sent(redis_client, keys, message, now=1)
    assert alerts.observe(redis_client, keys, "batch_cost", "b1", True, "big", now=10_000) is None


@pytest.mark.parametrize("env, variable", [
    ({"AISTATS_ALERT_URLS": "http://127.0.0.1:1/a"}, "AISTATS_ALERT_SECRET"),
    ({"AISTATS_ALERT_URLS": "ftp://x/y", "AISTATS_ALERT_SECRET": SECRET}, "AISTATS_ALERT_URLS"),
    ({"AISTATS_ALERT_DAILY_USD": "lots"}, "AISTATS_ALERT_DAILY_USD"),
    ({"AISTATS_ALERT_BATCH_USD": "-1"}, "AISTATS_ALERT_BATCH_USD"),
])
def test_bad_alert_settings_name_the_variable(env, variable):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert caught.value.variable == variable


class Receiver:
    """A local alert destination that verifies every message with the standardwebhooks package."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.refused = 0
        self.lock = threading.Lock()
        app = Flask("receiver")

        @app.post("/alerts")
        def take():
            try:
                payload = Webhook(SECRET).verify(request.get_data(), dict(request.headers))
            except Exception:  # noqa: BLE001 - any verification failure is a refusal
                with self.lock:
                    self.refused += 1
                return "bad signature", 400
            with self.lock:
                self.messages.append(payload)
            return "", 204

        self.served = Served(app)
        self.url = self.served.url + "/alerts"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.served.stop()


def test_a_dead_letter_gives_one_alert_and_after_the_requeue_one_resolve(settings, worker_env, upstream, receiver,
                                                                          monkeypatch):
    from workers import alert_jobs, context

    monkeypatch.setenv("AISTATS_ALERT_URLS", receiver.url)
    monkeypatch.setenv("AISTATS_ALERT_SECRET", SECRET)
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://hooks.example.test")
    context.current.cache_clear()
    app = create_app(settings)
    store = app.extensions["aistats"]
    # The gateway refuses the retrieve with a 400: not retryable, so the job is a dead letter at once.
    upstream.answer("dl1", (400, {"error": {"message": "bad request"}}))
    body, headers = signed(make_event("dl1", "batch.completed", status="in_progress"))
    assert app.test_client().post("/webhooks/aistats", data=body, headers=headers).status_code == 202
    run_worker(store)
    assert dead_letters.count(store.queue) == 1

    assert alert_jobs.tick() == 1
    assert alert_jobs.tick() == 0  # still failed, nothing new: no second alert
    (alert,) = receiver.messages
    assert alert["kind"] == "dead_letter" and alert["status"] == "firing" and alert["count"] == 1
    assert alert["subject"] == f"{settings.queue_name}:workers.jobs.reconcile_batch"
    assert alert["text"].startswith("[aistats-hooks] ALERT dead_letter") and alert["first_seen"]
    assert alert["dashboard"] == "https://hooks.example.test/dashboard"

    upstream.answer("dl1", (200, make_event("dl1")["data"]))
    (job,) = dead_letters.failed_jobs(store.queue)
    assert dead_letters.requeue(store.queue, job["job_id"])
    run_worker(store)
    assert dead_letters.count(store.queue) == 0
    assert alert_jobs.tick() == 1
    assert alert_jobs.tick() == 0
    assert [m["status"] for m in receiver.messages] == ["firing", "resolved"]
    assert receiver.refused == 0
    context.current.cache_clear()


def test_an_undelivered_alert_is_sent_at_the_next_tick(settings, worker_env, monkeypatch, redis_client):
    from workers import alert_jobs, context

    dead = Receiver()
    url = dead.url
    dead.served.stop()  # nothing listens there now
    monkeypatch.setenv("AISTATS_ALERT_URLS", url)
    monkeypatch.setenv("AISTATS_ALERT_SECRET", SECRET)
    monkeypatch.setenv("AISTATS_ALERT_DAILY_USD", "0.000001")
    context.current.cache_clear()
    keys = Keys(settings.key_prefix)
    from datetime import datetime, timezone

    redis_client.hset(keys.ledger("day"), datetime.now(timezone.utc).strftime("%Y-%m-%d"), 5_000)
    assert alert_jobs.tick() == 0
    (state,) = alerts.open_alerts(redis_client, keys)
    assert state.kind == "daily_spend" and state.last_sent == 0
    assert json.loads(redis_client.hget(alerts.state_key(keys), f"daily_spend\n{state.subject}"))["open"] is True
    from click.testing import CliRunner

    from aistats_hooks.cli import cli

    shown = CliRunner().invoke(cli, ["alerts"])
    assert shown.exit_code == 0 and "daily_spend" in shown.stdout and "not delivered yet" in shown.stdout
    context.current.cache_clear()
