"""The worker's log: one INFO line per job; a retried transient gateway error is one WARNING line, no traceback;
a bug keeps its ERROR and traceback. The stock `rq worker -c workers.settings` runs real jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aistats_hooks.redis_conn import connect
from aistats_hooks.sandbox import SandboxServer
from aistats_hooks.store import Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_one_line_per_job_and_transient_errors_without_traceback(settings):
    with SandboxServer(api_key=settings.api_key, speed=600.0, accept_unknown_files=True) as sandbox:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AISTATS_")}
        env.update(REDIS_URL=settings.redis_url, AISTATS_API_KEY=settings.api_key, AISTATS_BASE_URL=sandbox.base_url,
                   AISTATS_KEY_PREFIX=settings.key_prefix, AISTATS_QUEUE=settings.queue_name, LOG_LEVEL="info",
                   AISTATS_WEBHOOK_SECRET="whsec_test_secret", PYTHONPATH=str(ROOT))
        store = Store(connect(settings), settings)
        from aistats_hooks.sdk import AIStats

        with AIStats(settings.api_key, sandbox.base_url) as client:
            ok = client.create_batch({"endpoint": "/v1/responses", "input_file_id": "f", "completion_window": "24h"})
            flaky = client.create_batch({"endpoint": "/v1/responses", "input_file_id": "f",
                                         "completion_window": "24h", "metadata": {"sandbox_faults": "retrieve_500"}})
        store.request_reconcile(ok["id"], debounce=False)
        store.request_reconcile(flaky["id"], debounce=False)
        proc = subprocess.run([sys.executable, "-m", "rq.cli", "worker", "-c", "workers.settings", "--burst",
                               "--with-scheduler", "-w", "rq.worker.SimpleWorker", settings.queue_name],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        store.redis.close()
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    about_ok = [entry for entry in lines if ok["id"] in json.dumps(entry) or "Successfully completed" in entry["msg"]]
    info = [entry for entry in lines if entry.get("level") == "info" and entry.get("logger", "").startswith("rq.worker")
            and ("job" in entry["msg"].lower() or "Job OK" in entry["msg"])]
    assert info and all("Successfully completed" in entry["msg"] for entry in info), proc.stderr[-3000:]
    assert about_ok
    warnings = [entry for entry in lines if entry.get("level") == "warning" and "transient" in entry["msg"]]
    assert warnings and all("Traceback" not in json.dumps(entry) for entry in warnings), proc.stderr[-3000:]
    assert not [entry for entry in lines if entry.get("level") == "error" and "UpstreamUnavailable" in json.dumps(entry)]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_the_cron_ticks_discovery_every_second_without_a_line_each(settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AISTATS_")}
    env.update(REDIS_URL=settings.redis_url, AISTATS_API_KEY=settings.api_key, AISTATS_KEY_PREFIX=settings.key_prefix,
               AISTATS_QUEUE=settings.queue_name, LOG_LEVEL="info", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "rq.cli", "cron", "-c", "workers.settings", "workers/cron_config.py"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        import time

        from rq import Queue

        queue = Queue(settings.queue_name, connection=connect(settings))
        deadline = time.monotonic() + 30
        while sum("discover" in (j.func_name or "") for j in queue.jobs) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        ticks = sum("discover" in (j.func_name or "") for j in queue.jobs)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    assert ticks >= 3, out
    assert "Enqueued job sweep" in out  # the sweep's line stays
    assert "job discover" not in out, out
