"""Test helpers: serve WSGI apps on loopback, run RQ workers, sign deliveries."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rq import SimpleWorker
from werkzeug.serving import make_server

from aistats_hooks.rules.signatures import sign_headers

FIXTURES = Path(__file__).resolve().with_name("fixtures")
# A batch.completed delivery body as the gateway sends it (docs/protocol.md, "Payload").
FIXTURE = FIXTURES / "batch_completed.json"


class Served:
    """A WSGI app served on a real loopback port in a thread."""

    def __init__(self, app) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def fixture_event() -> dict:
    """Return a fresh copy of the sample delivery body."""
    return copy.deepcopy(json.loads(FIXTURE.read_text()))


def make_event(batch_id: str, event_type: str = "batch.completed", *, key: str | None = None, **data) -> dict:
    """Return a delivery body for ``batch_id`` based on the sample, with ``data`` overrides."""
    event = fixture_event()
    key = key or event_type
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in key)
    event["id"] = f"evt_batch_{batch_id}_{safe}"
    event["type"] = event_type
    event["delivery"]["key"] = key
    event["data"]["id"] = batch_id
    event["data"].update(data)
    return event


def signed(event: dict, secret: str = "whsec_test_secret", *, timestamp: int | None = None, attempt: int = 1):
    """Return (body, headers) of a correctly signed delivery of ``event``."""
    body = json.dumps(event).encode()
    headers = sign_headers(
        secret, body, timestamp=timestamp, event_id=event["id"], event_type=event["type"],
        delivery_key=event["delivery"]["key"], attempt=attempt,
    )
    return body, headers


def run_worker(store, *, max_jobs: int | None = None) -> SimpleWorker:
    """Run a real RQ worker on the store's queues (reconciles first, then side effects) until they are empty."""
    from aistats_hooks import job_queues

    worker = SimpleWorker(job_queues.family(store.queue), connection=store.redis)
    worker.work(burst=True, max_jobs=max_jobs, with_scheduler=False)
    return worker


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def spawn_worker(queue_name: str, env: dict, *, burst: bool = True):
    """Start the stock ``rq worker`` command as a separate process."""
    import os
    import subprocess
    import sys

    # The worker class of the Procfile: jobs run in the worker process itself.
    args = [sys.executable, "-m", "rq.cli", "worker", "--url", env["REDIS_URL"], "--logging_level", "WARNING",
            "-w", "rq.worker.SimpleWorker"]
    if burst:
        args.append("--burst")
    else:
        args.append("--with-scheduler")  # RQ retries with intervals need the scheduler
    full_env = {**os.environ, **env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    from aistats_hooks import job_queues

    return subprocess.Popen(args + job_queues.names(queue_name), env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def dashboard_login(client, token: str) -> None:
    """Log ``client`` (a Flask test client) in to the dashboard with the query token, CSRF included."""
    import re

    page = client.get("/dashboard/login").get_data(as_text=True)
    form = {"token": token}
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if csrf:
        form["csrf_token"] = csrf.group(1)
    answer = client.post("/dashboard/login", data=form)
    assert answer.status_code == 302, answer.get_data(as_text=True)[:300]
