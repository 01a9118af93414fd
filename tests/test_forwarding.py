"""Forwarding reconciled transitions to a real receiver that verifies them with the `standardwebhooks` library.

Real Redis, real RQ workers, a real upstream and a real loopback destination.
The destination answers 503 for a stretch, then 200; every transition of
every batch must arrive verified, in order per batch, once per webhook-id.
"""

from __future__ import annotations

import pytest
from standardwebhooks import Webhook

from aistats_hooks import job_queues

from aistats_hooks.effects import dispatch, forwarding
from aistats_hooks.config import Settings
from aistats_hooks.errors import ConfigError
from aistats_hooks.forward_settings import generate_secret
from bench.forward_destination import Destination
from tests.helpers import make_event, run_worker
from tests.test_handlers import batch, deliver, feed
from workers import context

EVENTS = "batch.created,batch.in_progress,batch.progress,batch.completed,batch.billing_settled"
SECRET = generate_secret()


@pytest.fixture
def destination():
    server = Destination(SECRET, fail_first=7)
    yield server
    server.stop()


@pytest.fixture
def app(settings, worker_env, destination, monkeypatch):
    env = {"AISTATS_FORWARD_URLS": destination.url, "AISTATS_FORWARD_SECRET": SECRET, "AISTATS_FORWARD_EVENTS": EVENTS}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(forwarding, "BACKOFF", [0] * 7)  # retries at once in these tests
    monkeypatch.setattr(dispatch, "BACKOFF", [0])
    context.current.cache_clear()
    from aistats_hooks.web import create_app

    flask_app = create_app(settings.replace(forward_urls=(destination.url,), forward_secret=SECRET,
                                            forward_events=tuple(EVENTS.split(","))))
    yield flask_app
    context.current.cache_clear()


@pytest.fixture
def store(app):
    from aistats_hooks.web import get_store

    return get_store(app)


def drain(store, rounds: int = 30) -> None:
    for _ in range(rounds):
        run_worker(store)
        if all(q.count == 0 for q in job_queues.family(store.queue)):
            return


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_every_transition_arrives_verified_in_order_once_per_id(app, settings, store, upstream, destination):
    ids = [f"fw{n}" for n in range(3)]
    for b in ids:
        upstream.answer(b, (200, batch(b, "in_progress", 1)), (200, batch(b, "completed", 4, settled=1000)))
    for b in ids:
        assert deliver(app, make_event(b, "batch.created", key="batch.created")).status_code in (200, 202)
    drain(store)
    for b in ids:
        done = make_event(b, **dict(batch(b, "completed", 4, settled=1000), updated_at="2026-06-17T17:00:00.000Z"))
        deliver(app, done)
        deliver(app, done)  # a duplicate: no second message
    drain(store)
    changes = feed(app, settings)
    assert any(r["answered"] == 503 for r in destination.requests)  # the stretch of 503s happened
    assert all(r["verified"] for r in destination.requests)
    delivered = destination.delivered()
    for b in ids:
        expected = [e["transition"] for e in changes if e["batch_id"] == b]
        assert expected == EVENTS.split(",")
        assert [r["type"] for r in delivered if r["batch_id"] == b] == expected
    # Every id tried during the outage arrived later with the same id (stable across retries).
    assert {r["id"] for r in destination.requests} == {r["id"] for r in delivered}
    assert len(delivered) == len(changes)
    stored = forwarding.messages(store.redis, store.keys)
    assert {m["status"] for m in stored} == {"delivered"} and len(stored) == len(delivered)
    assert all(m["attempts"][-1]["status_code"] == 200 for m in stored)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_410_gone_disables_the_destination_until_enabled(app, settings, store, upstream, destination):
    destination.fail_first, destination.status = 0, 410
    upstream.answer("gone1", (200, batch("gone1", "completed", 4, settled=5)))
    deliver(app, make_event("gone1", **dict(batch("gone1", "completed", 4, settled=5),
                                            updated_at="2026-06-17T17:00:00.000Z")))
    drain(store)
    assert destination.url in forwarding.disabled(store.redis, store.keys)
    statuses = [m["status"] for m in forwarding.messages(store.redis, store.keys, batch_id="gone1")]
    assert statuses and set(statuses) == {"disabled"}
    assert len(destination.requests) == 1  # not retried, and the later message was not sent
    code, out = run_cli("forwarding")
    assert code == 0 and "disabled: " + destination.url in out
    assert run_cli("forwarding", "enable", destination.url)[0] == 0
    assert forwarding.disabled(store.redis, store.keys) == {}
    assert run_cli("forwarding", "enable", destination.url)[0] == 1  # not disabled: one line, exit 1


def test_signed_headers_verify_with_the_official_library():
    from workers.forward_jobs import body_of, signed_headers

    body = body_of({"batch_id": "b1", "transition": "batch.completed", "at": "2026-06-17T16:00:00.000Z"},
                   {"id": "b1", "status": "completed"})
    headers = signed_headers(SECRET, "msg_abc", body)
    assert Webhook(SECRET).verify(body, headers)["data"]["status"] == "completed"
    assert headers["webhook-id"] == "msg_abc" and headers["webhook-signature"].startswith("v1,")
    with pytest.raises(Exception):
        Webhook(generate_secret()).verify(body, headers)


@pytest.mark.parametrize("env, name", [
    ({"AISTATS_FORWARD_URLS": "ftp://example.com/x", "AISTATS_FORWARD_SECRET": SECRET}, "AISTATS_FORWARD_URLS"),
    ({"AISTATS_FORWARD_URLS": "https://example.com/x"}, "AISTATS_FORWARD_SECRET"),
    ({"AISTATS_FORWARD_SECRET": "whsec_not*base64"}, "AISTATS_FORWARD_SECRET"),
    ({"AISTATS_FORWARD_SECRET": "notwhsec"}, "AISTATS_FORWARD_SECRET"),
    ({"AISTATS_FORWARD_EVENTS": "batch.done"}, "AISTATS_FORWARD_EVENTS"),
])
def test_invalid_forwarding_settings_name_the_variable(env, name):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert name in str(caught.value) and SECRET not in str(caught.value)


def test_message_ids_are_stable_per_entry_and_destination():
    a = forwarding.message_id("1-0", "https://a.example/h")
    assert a == forwarding.message_id("1-0", "https://a.example/h")
    assert a != forwarding.message_id("1-0", "https://b.example/h")
    assert a != forwarding.message_id("2-0", "https://a.example/h")


def run_cli(*args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from aistats_hooks.cli import cli

    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_failed_messages_are_visible_and_redelivered_in_order(app, settings, store, upstream, destination):
    destination.fail_first, destination.status = 0, 500
    upstream.answer("red1", (200, batch("red1", "completed", 4, settled=7)))
    deliver(app, make_event("red1", **dict(batch("red1", "completed", 4, settled=7),
                                           updated_at="2026-06-17T17:00:00.000Z")))
    drain(store)
    auth = {"Authorization": f"Bearer {settings.query_api_token}"}
    failed = app.test_client().get("/forwarding/messages?batch_id=red1&status=failed", headers=auth).json
    (message,) = failed["data"]  # the first transition failed for good; the later ones wait behind it
    assert message["transition"] == "batch.created" and len(message["attempts"]) == 8
    assert all(a["status_code"] == 500 and "latency_ms" in a for a in message["attempts"])
    assert app.test_client().get("/forwarding/messages?status=nope", headers=auth).status_code == 400
    assert app.test_client().get("/forwarding/messages").status_code == 401
    metrics = app.test_client().get("/metrics", headers=auth).get_data(as_text=True)
    assert 'aistats_forward_attempts_total{outcome="failed"} 1.0' in metrics
    code, out = run_cli("forwarding", "--failed")
    assert code == 0 and message["id"] in out and "500" in out
    assert run_cli("redeliver")[0] != 0  # nothing named: a usage error, one line
    destination.status = 200
    code, out = run_cli("--json", "redeliver", "--batch", "red1")
    assert code == 0, out
    drain(store)
    assert [r["type"] for r in destination.delivered()] == ["batch.created", "batch.completed",
                                                           "batch.billing_settled"]
    assert {m["status"] for m in forwarding.messages(store.redis, store.keys, batch_id="red1")} == {"delivered"}
    code, out = run_cli("redeliver", message["id"])  # again, on request: the same webhook-id
    assert code == 0
    drain(store)
    assert [r["id"] for r in destination.requests if r["answered"] == 200].count(message["id"]) == 2
    assert run_cli("redeliver", "msg_unknown")[0] == 1


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_redirects_are_not_followed(app, settings, store, upstream, destination, monkeypatch):
    monkeypatch.setenv("AISTATS_FORWARD_EVENTS", "batch.created")
    context.current.cache_clear()
    destination.fail_first, destination.status = 0, 308
    upstream.answer("rd1", (200, batch("rd1", "in_progress", 1)))
    deliver(app, make_event("rd1", "batch.created", key="batch.created"))
    drain(store)
    (message,) = forwarding.messages(store.redis, store.keys, batch_id="rd1")
    assert message["status"] == "failed" and {a["status_code"] for a in message["attempts"]} == {308}
    assert len(destination.requests) == len(message["attempts"])  # one request per attempt: none followed


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_bad_destination_stops_the_process_with_one_line(settings):
    import os
    import subprocess
    import sys

    env = {**os.environ, "REDIS_URL": settings.redis_url, "AISTATS_API_KEY": "sk_test_x",
           "AISTATS_FORWARD_URLS": "file:///etc/passwd", "AISTATS_FORWARD_SECRET": SECRET}
    proc = subprocess.run([sys.executable, "-m", "aistats_hooks", "forwarding"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["aistats-hooks: configuration error: AISTATS_FORWARD_URLS: expected "
                                                "comma-separated http:// or https:// URLs, got 'file:///etc/passwd'"]


def test_the_chaos_check_counts_missing_unverified_and_out_of_order(redis_client, prefix):
    import httpx

    from bench.chaos.forward_check import Forwarding
    from workers.forward_jobs import body_of, signed_headers

    class Stack:
        def redis(self):
            return redis_client

    stack = Stack()
    stack.prefix = prefix
    check = Forwarding(stack)
    try:
        feed_ids = {}
        for b, t in [("a", "batch.created"), ("b", "batch.created"), ("a", "batch.completed"),
                     ("b", "batch.completed"), ("c", "batch.created")]:
            feed_ids[(b, t)] = redis_client.xadd(f"{prefix}:changes", {"batch_id": b, "transition": t}).decode()

        def send(b, t, secret=check.secret):
            body = body_of({"batch_id": b, "transition": t, "at": "2026-06-17T16:00:00.000Z"}, {"id": b})
            mid = forwarding.message_id(feed_ids[(b, t)], check.destination.url)
            httpx.post(check.destination.url, content=body, headers=signed_headers(secret, mid, body))

        send("a", "batch.created")
        send("a", "batch.completed")
        send("a", "batch.completed")  # a redelivery: deduplicated on webhook-id
        send("b", "batch.completed")  # before its created: out of order
        send("b", "batch.created")
        send("c", "batch.created", secret=generate_secret())  # forged: unverified, so c is missing
        result = check.check(timeout=0)
    finally:
        check.stop()
    assert result["forward_unverified"] == 1
    assert result["forward_out_of_order"] == 1 and result["forward_out_of_order_ids"] == ["b"]
    assert result["forward_missing"] == 1
    # The good destination first, then the hanging and the dripping ones beside it.
    urls = stack.forward_env["AISTATS_FORWARD_URLS"].split(",")
    assert urls == [check.destination.url] + [h.url for h in check.hostile]
    assert [h.mode for h in check.hostile] == ["hang", "drip"] and result["forward_hostile_requests"] == 0


def test_a_dispatch_that_died_mid_entry_keeps_the_order_when_it_runs_again(settings, store, monkeypatch):
    from rq.job import Job

    settings = settings.replace(forward_urls=("https://receiver.example/h",), forward_secret=SECRET)
    redis, keys = store.redis, store.keys
    forwarding.ensure_group(redis, keys)
    first = redis.xadd(keys.changes, {"batch_id": "x", "transition": "batch.completed"}).decode()
    second = redis.xadd(keys.changes, {"batch_id": "x", "transition": "batch.billing_settled"}).decode()
    real, calls = forwarding.enqueue_job, []

    def dies_on_the_second(*args, **kwargs):
        calls.append(kwargs["job_id"])
        if len(calls) == 2:
            raise ConnectionError("the process died here")
        return real(*args, **kwargs)

    monkeypatch.setattr(forwarding, "enqueue_job", dies_on_the_second)
    with pytest.raises(ConnectionError):
        forwarding.dispatch(redis, keys, store.queue, settings)
    monkeypatch.setattr(forwarding, "enqueue_job", real)
    assert forwarding.dispatch(redis, keys, store.queue, settings) == 1  # the unacknowledged entry, once
    assert forwarding.dispatch(redis, keys, store.queue, settings) == 0
    url = settings.forward_urls[0]
    job = Job.fetch(forwarding.message_id(second, url), connection=redis)
    assert job.dependency_ids == [forwarding.message_id(first, url)]
