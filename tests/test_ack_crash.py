"""The acknowledgement keeps its promise when the web process dies between its two steps.

A real web process (the app under werkzeug's server, in a child process) is SIGKILLed
after INGEST recorded the delivery and before RQ got the job: the one fault injected
(the enqueue kills its own process; nothing else can stop a process at exactly that
instruction). The gateway got no answer, so it retries; the retry, served by a fresh
process, is a duplicate that makes the job exist, and a real RQ worker reconciles it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from tests.helpers import make_event, run_worker, signed, wait_for

ROOT = Path(__file__).resolve().parents[1]

SERVE = textwrap.dedent("""
    import os, signal, sys
    from werkzeug.serving import make_server
    from aistats_hooks import queueing
    from aistats_hooks.web import create_app

    if os.environ.get("CRASH_BEFORE_ENQUEUE") == "1":
        def enqueue(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)  # the fault: dead after INGEST, before RQ
        queueing.enqueue = enqueue
    server = make_server("127.0.0.1", 0, create_app(), threaded=True)
    print(server.server_port, flush=True)
    server.serve_forever()
""")


def serve(env: dict, crash: bool) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", SERVE], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**env, "CRASH_BEFORE_ENQUEUE": "1" if crash else "0"})
    port = proc.stdout.readline().strip()
    assert port, "the web process did not start"
    return proc, f"http://127.0.0.1:{port}"


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    proc.stdout.close()


@pytest.mark.slow
def test_a_web_process_killed_between_record_and_enqueue_loses_nothing(settings, store, upstream, worker_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AISTATS_", "REDIS_URL"))}
    env.update({"REDIS_URL": settings.redis_url, "AISTATS_KEY_PREFIX": settings.key_prefix,
                "AISTATS_QUEUE": settings.queue_name, "AISTATS_WEBHOOK_SECRET": "whsec_test_secret",
                "QUERY_API_TOKEN": settings.query_api_token, "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)})
    body, headers = signed(make_event("batch_crash"))

    proc, base = serve(env, crash=True)
    try:
        with pytest.raises(httpx.TransportError):  # no answer: the gateway will retry
            httpx.post(base + "/webhooks/aistats", content=body, headers=headers, timeout=10)
        wait_for(lambda: proc.poll() is not None, timeout=10)
        assert proc.returncode == -9
    finally:
        stop(proc)
    # Recorded and holding its batch's slot, but RQ never got the job.
    assert [e["id"] for e in store.events("batch_crash")] == ["evt_batch_batch_crash_batch_completed"]
    slot = store.redis.get(store.keys.pending("batch_crash")).decode()
    assert store.queue.count == 0 and not store.queue.fetch_job(slot)

    proc, base = serve(env, crash=False)
    try:
        retry = httpx.post(base + "/webhooks/aistats", content=body, headers=headers, timeout=10)
    finally:
        stop(proc)
    assert retry.status_code == 200 and retry.json()["status"] == "duplicate"
    assert store.queue.job_ids == [slot]

    # The job runs and the batch ends as the gateway says.
    upstream.answer("batch_crash", (200, make_event("batch_crash")["data"]))
    run_worker(store)
    record = store.get("batch_crash")
    assert record is not None and record["status"] == "completed" and record["source"] == "retrieve"
