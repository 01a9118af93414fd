"""A wrong API key explains itself (issue 28, item 6): the worker logs one line, no traceback; `status`,
`failed` and /jobs/failed say the gateway refused the key, after how many attempts, and what to do next.

A real sandbox refuses the key with 401; the stock `rq worker -c workers.settings` runs the job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aistats_hooks.cli import cli
from aistats_hooks.reconcile import track_batch
from aistats_hooks.redis_conn import connect
from aistats_hooks.sandbox import SandboxServer
from aistats_hooks.store import Store
from aistats_hooks.web import create_app

ROOT = Path(__file__).resolve().parents[1]
NEXT = "the gateway refused AISTATS_API_KEY: fix the key, restart the workers, then requeue"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_refused_key_is_one_log_line_and_every_view_says_what_to_do(settings):
    with SandboxServer(api_key=settings.api_key, speed=600.0, accept_unknown_files=True) as sandbox:
        from aistats_hooks.sdk import AIStats

        with AIStats(settings.api_key, sandbox.base_url) as client:
            batch = client.create_batch({"endpoint": "/v1/responses", "input_file_id": "f", "completion_window": "24h"})
        store = Store(connect(settings), settings)
        track_batch(store, batch)
        store.request_reconcile(batch["id"], debounce=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AISTATS_")}
        env.update(REDIS_URL=settings.redis_url, AISTATS_API_KEY="sk_wrong_key_0123456789",
                   AISTATS_BASE_URL=sandbox.base_url, AISTATS_KEY_PREFIX=settings.key_prefix,
                   AISTATS_QUEUE=settings.queue_name, LOG_LEVEL="info", AISTATS_WEBHOOK_SECRET="whsec_test_secret",
                   PYTHONPATH=str(ROOT))
        proc = subprocess.run([sys.executable, "-m", "rq.cli", "worker", "-c", "workers.settings", "--burst",
                               "-w", "rq.worker.SimpleWorker", settings.queue_name],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    errors = [json.loads(line) for line in proc.stderr.splitlines()
              if line.startswith("{") and json.loads(line).get("level") == "error"]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "AuthenticationError" in errors[0]["msg"] and NEXT in errors[0]["msg"]
    assert "exc" not in errors[0] and "sk_wrong_key" not in proc.stderr

    cli_env = {k: env[k] for k in ("REDIS_URL", "AISTATS_API_KEY", "AISTATS_BASE_URL", "AISTATS_KEY_PREFIX",
                                   "AISTATS_QUEUE", "AISTATS_WEBHOOK_SECRET")}
    status = CliRunner().invoke(cli, ["status", batch["id"]], env=cli_env, catch_exceptions=False)
    assert status.exit_code == 0, status.output
    assert "gateway: the gateway refused the API key: " in status.stdout
    assert "failed after 1 attempt (not retried: retrying cannot fix this)" in status.stdout
    assert f"next: {NEXT}" in status.stdout
    assert "has not been asked" not in status.stdout

    failed = CliRunner().invoke(cli, ["failed"], env=cli_env, catch_exceptions=False)
    assert failed.exit_code == 0
    assert "failed after 1 attempt" in failed.stdout and f"next: {NEXT}" in failed.stdout

    app = create_app(settings)
    answer = app.test_client().get("/jobs/failed", headers={"Authorization": f"Bearer {settings.query_api_token}"})
    job = answer.json["data"][0]
    assert job["batch_id"] == batch["id"] and job["attempts"] == 1 and job["kind"] == "key_refused"
    assert job["summary"] == "failed after 1 attempt (not retried: retrying cannot fix this)"
    assert job["next_step"].startswith(NEXT)
    store.redis.close()
