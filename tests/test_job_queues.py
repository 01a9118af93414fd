"""Reconciles, handlers, forwarding and the archive run on queues of their own (aistats_hooks/job_queues.py).

A worker serving only the reconcile queue brings a batch to its final record
while its forwarding and handler jobs wait on theirs; the worker settings
serve every queue, reconciles first, unless AISTATS_WORKER_QUEUES says
otherwise; failed jobs of every queue are listed and requeued together.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rq import SimpleWorker

from aistats_hooks import dead_letters, job_queues

from aistats_hooks.effects import dispatch, forwarding
from aistats_hooks.config import Settings
from aistats_hooks.errors import ConfigError
from aistats_hooks.forward_settings import generate_secret
from bench.hostile_destinations import Hostile
from tests.helpers import make_event
from tests.test_handlers import batch, deliver
from workers import context

ROOT = Path(__file__).resolve().parents[1]
SECRET = generate_secret()


def test_queue_names_and_the_worker_queues_setting():
    assert job_queues.names("q") == ["q", "q-handlers", "q-forward", "q-archive"]
    assert Settings.from_env({}).worker_queues == job_queues.ROLES
    # Priority order whatever order they are written in: reconciles first.
    assert Settings.from_env({"AISTATS_WORKER_QUEUES": "forward, Reconcile"}).worker_queues == ("reconcile", "forward")
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"AISTATS_WORKER_QUEUES": "reconcile,forwarding"})
    assert "AISTATS_WORKER_QUEUES" in str(caught.value) and "'forwarding'" in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize("roles, expected", [("", ["q", "q-handlers", "q-forward", "q-archive"]),
                                             ("archive,handlers", ["q-handlers", "q-archive"])])
def test_the_worker_settings_serve_the_queues_in_priority_order(settings, roles, expected):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": settings.redis_url, "AISTATS_API_KEY": "sk_test_x",
           "AISTATS_QUEUE": "q", "AISTATS_WORKER_QUEUES": roles, "LOG_LEVEL": "ERROR"}
    proc = subprocess.run([sys.executable, "-c", "import json, workers.settings as s; print(json.dumps(s.QUEUES))"],
                          env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == expected


@pytest.fixture
def app(settings, worker_env, monkeypatch):
    hang = Hostile("hang")
    monkeypatch.setenv("AISTATS_FORWARD_URLS", hang.url)
    monkeypatch.setenv("AISTATS_FORWARD_SECRET", SECRET)
    monkeypatch.setenv("AISTATS_HANDLERS", "bench.counting_handlers")
    monkeypatch.setattr(dispatch, "BACKOFF", [0])
    context.current.cache_clear()
    from aistats_hooks.web import create_app

    flask_app = create_app(settings.replace(forward_urls=(hang.url,), forward_secret=SECRET,
                                            handler_modules=("bench.counting_handlers",)))
    flask_app.hang = hang
    yield flask_app
    hang.stop()
    context.current.cache_clear()


@pytest.fixture
def store(app):
    from aistats_hooks.web import get_store

    return get_store(app)


@pytest.mark.slow
def test_a_reconcile_worker_finishes_batches_while_side_effects_wait_on_their_queues(app, store, upstream):
    ids = ["iso1", "iso2"]
    for b in ids:
        upstream.answer(b, (200, batch(b, "completed", 4, settled=100)))
        assert deliver(app, make_event(b, **dict(batch(b, "completed", 4, settled=100),
                                                 updated_at="2026-06-17T17:00:00.000Z"))).status_code in (200, 202)
    # AISTATS_WORKER_QUEUES=reconcile: the reconcile queue alone.
    SimpleWorker([store.queue], connection=store.redis).work(burst=True, with_scheduler=False)
    assert all(store.get(b)["status"] == "completed" for b in ids)
    assert store.queue.count == 0
    forward, handlers = job_queues.of(store.queue, "forward"), job_queues.of(store.queue, "handlers")
    assert handlers.count >= len(ids)  # enqueued, none run, none on the reconciles' queue
    # Forwarding's fan-out too waits for the forward queue's worker: one dispatch job, asked for once.
    assert [j.func_name for j in forward.get_jobs()] == [forwarding.DISPATCH_FUNC]
    assert forwarding.messages(store.redis, store.keys) == [] and app.hang.requests == 0


def _boom(batch_id: str) -> None:
    raise RuntimeError(f"side effect failed for {batch_id}")


def test_failed_jobs_of_every_queue_are_listed_and_requeued_together(settings, redis_client):
    from aistats_hooks.queueing import make_queue

    queue = make_queue(redis_client, settings)
    family = job_queues.family(queue)
    jobs = [q.enqueue(_boom, f"b{n}", job_id=f"{settings.key_prefix}-fam{n}") for n, q in enumerate(family)]
    SimpleWorker(family, connection=redis_client).work(burst=True)
    assert dead_letters.count(queue) == 4
    assert {j["job_id"] for j in dead_letters.failed_jobs(queue)} == {j.id for j in jobs}
    assert len(dead_letters.failed_jobs(queue, limit=2)) == 2
    assert dead_letters.requeue(queue, jobs[2].id) is True  # the forward queue's, found from the reconcile queue
    assert family[2].count == 1 and family[0].count == 0
    assert dead_letters.requeue_all(queue) == 3 and dead_letters.count(queue) == 0
    assert [q.count for q in family] == [1, 1, 1, 1]  # each back on its own queue
