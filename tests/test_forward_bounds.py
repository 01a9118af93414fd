"""A forwarding attempt is bounded whatever the destination does, and a destination can be let go of.

Real loopback servers that hang, drip one byte at a time and answer a huge
body (bench/hostile_destinations.py), real Redis and real RQ workers: an
attempt ends at its total deadline (not httpx's per-read timeout), reads at
most ``MAX_ANSWER_BYTES``, and is recorded, even when the worker running it
is killed. A destination no longer configured is dropped without a request;
``forwarding disable URL`` stops one before its next attempt.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from rq import SimpleWorker

from aistats_hooks import job_queues

from aistats_hooks.effects import bounded_post, forwarding
from aistats_hooks.forward_settings import generate_secret
from bench.forward_destination import Destination
from bench.hostile_destinations import Hostile
from tests.helpers import wait_for
from workers import context

SECRET = generate_secret()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def hostile():
    servers = []

    def make(mode: str, **kw) -> Hostile:
        servers.append(Hostile(mode, **kw))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def good():
    server = Destination(SECRET)
    yield server
    server.stop()


def configure(monkeypatch, settings, urls: list[str]):
    """Forward every transition to ``urls`` (in os.environ for the in-process worker's context too)."""
    monkeypatch.setenv("AISTATS_FORWARD_URLS", ",".join(urls))
    monkeypatch.setenv("AISTATS_FORWARD_SECRET", SECRET)
    monkeypatch.setenv("AISTATS_FORWARD_EVENTS", "batch.created,batch.completed")
    context.current.cache_clear()
    return settings.replace(forward_urls=tuple(urls), forward_secret=SECRET,
                            forward_events=("batch.created", "batch.completed"))


def transition(store, settings, batch_id: str, name: str = "batch.created") -> int:
    """Append one transition to the feed and dispatch it: one message (and job) per destination."""
    forwarding.ensure_group(store.redis, store.keys)
    store.redis.xadd(store.keys.changes, {"batch_id": batch_id, "transition": name,
                                          "at": "2026-06-17T16:00:00.000Z"})
    return forwarding.dispatch(store.redis, store.keys, store.queue, settings)


def work(store) -> None:
    """A real worker on the forward queue until it is empty (retries are scheduled, not run)."""
    forward = job_queues.of(store.queue, "forward")
    SimpleWorker([forward], connection=store.redis).work(burst=True, with_scheduler=False)


def cli(*args: str) -> tuple[int, str]:
    from aistats_hooks.cli import cli as main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.parametrize("mode", ["hang", "drip"])
def test_an_attempt_ends_at_its_total_deadline(hostile, mode):
    # Dripping a byte every 0.1 s: every read returns, so only a deadline on the whole attempt ends it.
    server = hostile(mode, drip_interval=0.1)
    answer = bounded_post.post(server.url, b"{}", {}, deadline_s=1.5, max_bytes=forwarding.MAX_ANSWER_BYTES)
    assert answer.error == bounded_post.TIMEOUT_ERROR and answer.status_code is None
    assert server.requests == 1
    if mode == "drip":
        assert server.sent > 1  # several reads returned within the deadline


def test_a_huge_answer_is_not_read(hostile):
    server = hostile("huge", huge_bytes=200 * 1024 * 1024)
    answer = bounded_post.post(server.url, b"{}", {}, deadline_s=10, max_bytes=forwarding.MAX_ANSWER_BYTES)
    assert answer.status_code == 200 and answer.bytes_read == forwarding.MAX_ANSWER_BYTES
    # The sender closed the connection: the server got rid of a few socket buffers' worth, not 200 MB.
    wait_for(lambda: server.finished == 1)
    assert server.sent < 20 * 1024 * 1024


@pytest.mark.slow
def test_timed_out_attempts_are_recorded_and_retried(settings, worker_env, store, hostile, good, monkeypatch):
    monkeypatch.setattr(forwarding, "TIMEOUT", 1.0)
    hang, drip = hostile("hang"), hostile("drip", drip_interval=0.1)
    settings = configure(monkeypatch, settings, [hang.url, drip.url, good.url])
    assert transition(store, settings, "tb1") == 3
    assert job_queues.of(store.queue, "forward").count == 3 and store.queue.count == 0  # not on the reconciles'
    work(store)
    by_url = {m["url"]: m for m in forwarding.messages(store.redis, store.keys, batch_id="tb1")}
    for url in (hang.url, drip.url):
        (attempt,) = by_url[url]["attempts"]
        assert by_url[url]["status"] == "retrying" and attempt["error"] == "timeout"
    assert by_url[good.url]["status"] == "delivered" and [r["type"] for r in good.delivered()] == ["batch.created"]
    assert int(store.redis.hget(store.keys.counters("forward"), "timed_out")) == 2


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_an_attempt_killed_with_its_worker_is_recorded(settings, worker_env, store, hostile, monkeypatch):
    hang = hostile("hang")
    settings = configure(monkeypatch, settings, [hang.url])
    transition(store, settings, "tk1")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen([sys.executable, "-m", "rq.cli", "worker", "-w", "rq.worker.SimpleWorker", "--url",
                               settings.redis_url, "--burst", *job_queues.names(settings.queue_name)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: hang.requests == 1, timeout=60)
        worker.send_signal(signal.SIGKILL)  # mid-attempt: the job never gets to record its outcome
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    (message,) = forwarding.messages(store.redis, store.keys, batch_id="tk1")
    assert [a["error"] for a in message["attempts"]] == [forwarding.INTERRUPTED]


@pytest.mark.slow
def test_a_destination_no_longer_configured_is_dropped_not_retried(settings, worker_env, store, good, monkeypatch):
    old = "http://127.0.0.1:9/removed"
    settings = configure(monkeypatch, settings, [old, good.url])
    transition(store, settings, "td1")
    transition(store, settings, "td1", "batch.completed")
    configure(monkeypatch, settings, [good.url])  # the operator removed it and restarted the workers
    work(store)
    messages = forwarding.messages(store.redis, store.keys, batch_id="td1")
    dropped = [m for m in messages if m["url"] == old]
    assert [m["status"] for m in dropped] == ["dropped", "dropped"]
    assert all(m["attempts"][-1]["error"] == "destination no longer configured" for m in dropped)
    assert {m["status"] for m in messages if m["url"] == good.url} == {"delivered"}
    forward = job_queues.of(store.queue, "forward")
    assert forward.scheduled_job_registry.count == 0 and forward.failed_job_registry.count == 0


@pytest.mark.slow
def test_forwarding_disable_stops_a_destination_before_its_next_attempt(settings, worker_env, store, good,
                                                                        monkeypatch):
    secret_url = good.url + "?token=s3cr3t-t0ken"
    settings = configure(monkeypatch, settings, [secret_url])
    transition(store, settings, "tx1")
    code, out = cli("forwarding", "disable", forwarding.public({"url": secret_url})["destination"])  # as shown
    assert code == 0 and "s3cr3t" not in out and "token=***" in out
    assert secret_url in forwarding.disabled(store.redis, store.keys)
    work(store)
    (message,) = forwarding.messages(store.redis, store.keys, batch_id="tx1")
    assert message["status"] == "disabled" and good.requests == []
    code, out = cli("forwarding", "disable", "http://127.0.0.1:9/unknown")
    assert code == 1 and out.count("\n") == 1 and "not a destination" in out
    assert cli("forwarding", "enable", secret_url)[0] == 0
    assert forwarding.disabled(store.redis, store.keys) == {}


@pytest.mark.slow
def test_after_a_timeout_the_destinations_other_messages_wait_without_a_request(settings, worker_env, store,
                                                                               hostile, good, monkeypatch):
    monkeypatch.setattr(forwarding, "TIMEOUT", 1.0)
    hang = hostile("hang")
    settings = configure(monkeypatch, settings, [hang.url, good.url])
    for b in ("tp1", "tp2", "tp3"):
        transition(store, settings, b)
    work(store)
    assert hang.requests == 1  # one attempt timed out; the two after it were held back
    hung = [m for m in forwarding.messages(store.redis, store.keys) if m["url"] == hang.url]
    assert sorted(m["attempts"][-1]["error"] for m in hung) == [forwarding.PAUSED, forwarding.PAUSED, "timeout"]
    assert {m["status"] for m in hung} == {"retrying"}
    assert len(good.delivered()) == 3  # the good destination is not held back
