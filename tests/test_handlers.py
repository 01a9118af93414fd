"""Handlers on transitions and the change feed, over real Redis, real RQ workers and a real upstream.

The counting handler module (``bench.counting_handlers``) records one run per
success per (batch, transition) in Redis. Each (batch, transition, handler)
must succeed exactly once whatever the deliveries do (duplicates, out of
order, replays), after failures (retried), and after a worker is SIGKILLed
mid-handler; the feed lists each batch's transitions once, in order.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rq.registry import FailedJobRegistry

from aistats_hooks import handlers, job_queues

from aistats_hooks.effects import dispatch, handler_runs
from bench.counting_handlers import attempts_key, runs_key
from tests.helpers import make_event, run_worker, signed, wait_for
from workers import context

COUNTING = "bench.counting_handlers"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def app(settings, worker_env, monkeypatch):
    """The receiver, and a worker environment (conftest's ``worker_env``) that loads the counting handlers."""
    env = dict(worker_env, AISTATS_HANDLERS=COUNTING)
    monkeypatch.setenv("AISTATS_HANDLERS", COUNTING)
    monkeypatch.setattr(dispatch, "BACKOFF", [0])  # retries at once in these tests
    context.current.cache_clear()
    from aistats_hooks.web import create_app

    flask_app = create_app(settings)
    flask_app.worker_env = env
    yield flask_app
    context.current.cache_clear()


@pytest.fixture
def store(app):
    from aistats_hooks.web import get_store

    return get_store(app)


def deliver(app, event):
    body, headers = signed(event)
    return app.test_client().post("/webhooks/aistats", data=body, headers=headers)


def batch(batch_id, status, done=0, settled=None):
    data = copy.deepcopy(make_event(batch_id)["data"])
    data.update(status=status, request_counts={"total": 4, "completed": done, "failed": 0})
    data["billing"] = ({"state": "settled", "total_nanos": settled} if settled
                       else {"state": "pending", "total_nanos": None})
    data["updated_at"] = f"2026-06-17T16:0{done}:00.000Z"
    return data


def runs(store) -> dict[str, int]:
    raw = store.redis.hgetall(runs_key(store.settings.key_prefix))
    return {k.decode(): int(v) for k, v in raw.items()}


def feed(app, settings):
    resp = app.test_client().get("/changes?limit=1000", headers={"Authorization": f"Bearer {settings.query_api_token}"})
    assert resp.status_code == 200, resp.json
    return resp.json["data"]


def test_each_transition_runs_each_handler_once_whatever_the_deliveries_do(app, settings, store, upstream):
    upstream.answer("h1", (200, batch("h1", "in_progress", 1)), (200, batch("h1", "in_progress", 3)),
                    (200, batch("h1", "completed", 4, settled=20250)))
    created = make_event("h1", "batch.created", key="batch.created")
    completed = make_event("h1", "batch.completed")
    for event in (created, created, completed, created, completed):  # duplicates, a stale replay after terminal
        assert deliver(app, event).status_code in (200, 202)
        run_worker(store)
    for _ in range(3):  # replays later on (new event ids for the same states)
        deliver(app, make_event("h1", "batch.completed", key=f"batch.completed.{time.time_ns()}"))
        run_worker(store)
    expected = ["batch.created", "batch.in_progress", "batch.progress", "batch.progress",
                "batch.completed", "batch.billing_settled"]
    assert [e["transition"] for e in feed(app, settings) if e["batch_id"] == "h1"] == expected
    assert sorted(k.split("|")[1] for k in runs(store)) == sorted(expected)
    assert all(n == 1 for n in runs(store).values())


def test_a_handler_that_raises_twice_runs_three_times_and_succeeds_once(app, settings, store, upstream,
                                                                         monkeypatch):
    monkeypatch.setenv("COUNTING_FAIL_ATTEMPTS", "2")
    upstream.answer("h2", (200, batch("h2", "completed", 4, settled=500)))
    deliver(app, make_event("h2"))
    for _ in range(4):
        run_worker(store)
    attempts = {k.decode(): int(v) for k, v in store.redis.hgetall(attempts_key(settings.key_prefix)).items()}
    (field,) = [k for k in attempts if k.startswith("h2|batch.completed|")]
    assert attempts[field] == 3 and runs(store)[field] == 1
    assert FailedJobRegistry(queue=job_queues.of(store.queue, "handlers")).count == 0
    # What the dashboard's batch page lists: each run's last outcome, the completed one done on attempt 3.
    recorded = {(r["transition"], r["status"], r["attempt"]) for r in handler_runs.of_batch(store.redis, store.keys, "h2")}
    assert ("batch.completed", "done", 3) in recorded
    assert all(r["handler"] == "bench.counting_handlers.count" for r in handler_runs.of_batch(store.redis, store.keys, "h2"))


def test_later_transitions_wait_for_a_failed_earlier_one(app, settings, store, upstream, monkeypatch):
    monkeypatch.setattr(dispatch, "BACKOFF", [0])
    monkeypatch.setenv("COUNTING_FAIL_ATTEMPTS", "99")
    upstream.answer("h3", (200, batch("h3", "in_progress", 1)), (200, batch("h3", "completed", 4, settled=700)))
    deliver(app, make_event("h3", "batch.created", key="batch.created"))
    run_worker(store)
    deliver(app, make_event("h3"))
    for _ in range(8):
        run_worker(store)
    assert runs(store) == {}  # created failed for good: nothing after it ran
    monkeypatch.setenv("COUNTING_FAIL_ATTEMPTS", "0")
    from aistats_hooks import dead_letters

    requeued = dead_letters.requeue_all(store.queue)
    assert requeued >= 1
    for _ in range(6):
        run_worker(store)
    ran = {k.split("|")[1] for k in runs(store) if k.startswith("h3|")}
    assert {"batch.created", "batch.completed"} <= ran and all(v == 1 for v in runs(store).values())


def _rq_worker(env: dict, queue: str) -> subprocess.Popen:
    """A stock `rq worker` process (SimpleWorker, as the Procfile) that notices dead workers' jobs within seconds.

    An idle RQ worker runs its maintenance (which retries a dead worker's abandoned job) only when its
    blocking dequeue times out, after worker-ttl - 15 s; in production the cron's sweep wakes it every
    AISTATS_SWEEP_INTERVAL. Here a short ttl stands in for that.
    """
    args = [sys.executable, "-m", "rq.cli", "worker", "--url", env["REDIS_URL"], "-w", "rq.worker.SimpleWorker",
            "--with-scheduler", "--maintenance-interval", "1", "--worker-ttl", "20", "--logging_level", "WARNING",
            *job_queues.names(queue)]
    return subprocess.Popen(args, env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_a_worker_killed_mid_handler_still_runs_it_exactly_once(app, settings, store, upstream, monkeypatch):
    # A short job timeout: RQ gives up on the killed worker's job (abandoned) and retries it within seconds.
    monkeypatch.setenv("AISTATS_HANDLER_TIMEOUT", "3")
    app.worker_env["AISTATS_HANDLER_TIMEOUT"] = "3"
    context.current.cache_clear()
    upstream.answer("h4", (200, batch("h4", "completed", 4, settled=900)))
    deliver(app, make_event("h4"))
    run_worker(store, max_jobs=1)  # only the reconcile: it dispatches the handler jobs, which wait
    assert store.queue.count == 0  # the handler jobs are on their own queue, never the reconciles'
    assert job_queues.of(store.queue, "handlers").count == 1  # created; completed, billing_settled wait on it
    started = f"{settings.key_prefix}:test:started"
    env = dict(app.worker_env, COUNTING_SLEEP="30", COUNTING_STARTED=started)
    worker = _rq_worker(env, settings.queue_name)
    try:
        assert wait_for(lambda: store.redis.llen(started) > 0, timeout=60)
        worker.send_signal(signal.SIGKILL)  # SimpleWorker: the handler runs in this very process
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    worker = _rq_worker(dict(app.worker_env, COUNTING_SLEEP="0"), settings.queue_name)
    try:
        # RQ declares the killed run abandoned once its heartbeat (>= 60 s) lapses, then retries it.
        done = wait_for(lambda: len([k for k in runs(store) if k.startswith("h4|")]) == 3 and runs(store),
                        timeout=180)
    finally:
        worker.terminate()
        worker.wait(10)
    assert all(v == 1 for k, v in done.items() if k.startswith("h4|"))
    assert int(store.redis.hget(attempts_key(settings.key_prefix), store.redis.lindex(started, 0)) or 0) >= 2


def test_handlers_run_only_when_registered(app, settings, store, upstream):
    assert {h.name for h in handlers.load([COUNTING])} >= {f"{COUNTING}.count"}


def test_changes_api_pages_in_order_and_refuses_bad_cursors(app, settings, store, upstream):
    for n in range(3):
        upstream.answer(f"c{n}", (200, batch(f"c{n}", "completed", 4, settled=100 + n)))
        deliver(app, make_event(f"c{n}"))
        run_worker(store)
    auth = {"Authorization": f"Bearer {settings.query_api_token}"}
    client = app.test_client()
    first = client.get("/changes?limit=2", headers=auth).json
    second = client.get(f"/changes?limit=1000&after={first['next_cursor']}", headers=auth).json
    ids = [e["id"] for e in first["data"] + second["data"]]
    assert len(ids) == len(set(ids)) and ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    settled = [e for e in first["data"] + second["data"] if e["transition"] == "batch.billing_settled"]
    assert sorted(e["settled_nanos"] for e in settled) == [100, 101, 102]
    assert client.get("/changes?after=nope", headers=auth).status_code == 400
    assert client.get("/changes?limit=0", headers=auth).status_code == 400
    assert client.get("/changes").status_code == 401


@pytest.mark.slow
def test_a_worker_whose_handler_module_does_not_import_stops_with_one_line(settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AISTATS_", "REDIS_URL"))}
    env.update(REDIS_URL=settings.redis_url, AISTATS_API_KEY="sk_x_123456", PYTHONPATH=str(ROOT),
               AISTATS_HANDLERS="examples.handlers,no_such_handlers_module")
    proc = subprocess.run([sys.executable, "-m", "rq.cli", "worker", "-c", "workers.settings", "--burst"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.strip().splitlines() == [
        "aistats-hooks: configuration error: AISTATS_HANDLERS: cannot import 'no_such_handlers_module': "
        "ModuleNotFoundError: No module named 'no_such_handlers_module'"
    ]


def test_the_cli_lists_handlers_and_pages_the_feed(app, settings, store, upstream):
    from click.testing import CliRunner

    from aistats_hooks.cli import cli

    upstream.answer("c9", (200, batch("c9", "completed", 4, settled=42)))
    deliver(app, make_event("c9"))
    run_worker(store)
    env = {name: value for name, value in app.worker_env.items()}
    listed = CliRunner().invoke(cli, ["--json", "handlers"], env=env)
    assert json.loads(listed.stdout)["data"] == [{"handler": f"{COUNTING}.count",
                                                 "transitions": sorted(handlers.get(f"{COUNTING}.count").transitions)}]
    page = json.loads(CliRunner().invoke(cli, ["--json", "changes", "--limit", "2"], env=env).stdout)
    assert [e["transition"] for e in page["data"]] == ["batch.created", "batch.completed"]
    rest = CliRunner().invoke(cli, ["changes", "--after", page["next_cursor"]], env=env).stdout.splitlines()
    assert len(rest) == 1 and rest[0].endswith("batch.billing_settled  completed  settled 42 nanos")
    bad = CliRunner().invoke(cli, ["changes", "--after", "nope"], env=env)
    assert bad.exit_code == 1 and "cursor must be an entry id" in bad.stderr
