"""Failed work (dead letters): a reconcile refused for good shows in `failed`, GET /jobs/failed and /metrics,
and succeeds after `requeue` once the cause (a wrong API key) is fixed. Real sandbox, receiver and `rq worker`."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.cli.conftest import one_line_error, run
from tests.helpers import spawn_worker


def metric(text: str, name: str) -> float | None:
    found = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    return float(found.group(1)) if found else None


def work(env: dict, **overrides: str) -> None:
    """Run the stock `rq worker` over the queue until it is empty (burst)."""
    worker = spawn_worker(env["AISTATS_QUEUE"], {**env, **overrides})
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output.decode(errors="replace")[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_reconcile_failed_for_good_is_listed_counted_and_requeued_once_the_key_is_fixed(env, receiver, sandbox):
    base, auth = receiver[0].url, {"Authorization": f"Bearer {env['QUERY_API_TOKEN']}"}
    created = run(env, "create-batch", "--endpoint", "responses", "--input-file-id", "file_cli", "--no-webhook")
    assert created.exit_code == 0, created.output
    batch_id = created.stdout.strip()
    assert run(env, "reconcile", batch_id).exit_code == 0

    work(env, AISTATS_API_KEY="sk_wrong_key_0123456789")  # the gateway answers 401: not retried, failed

    listed = run(env, "--json", "failed")
    assert listed.exit_code == 0, listed.output
    failed = json.loads(listed.stdout)
    assert failed["count"] == 1
    (job,) = failed["data"]
    assert job["batch_id"] == batch_id and job["attempts"] == 1 and job["failed_at"]
    assert "AuthenticationError" in job["error"] and "sk_wrong_key" not in job["error"]
    human = run(env, "failed")
    assert job["job_id"] in human.stdout and batch_id in human.stdout and "failed after 1 attempt" in human.stdout

    over_http = httpx.get(f"{base}/jobs/failed", headers=auth, timeout=10)
    assert over_http.status_code == 200 and over_http.json()["data"] == failed["data"]
    assert httpx.get(f"{base}/jobs/failed", timeout=10).status_code == 401
    assert metric(httpx.get(f"{base}/metrics", headers=auth, timeout=10).text, "aistats_failed_jobs") == 1

    # The key is fixed (the worker restarts with the right one); the job goes back and succeeds.
    requeued = run(env, "requeue", job["job_id"])
    assert requeued.exit_code == 0 and requeued.stdout.strip() == f"requeued {job['job_id']}"
    work(env)
    record = json.loads(run(env, "--json", "status", batch_id).stdout)
    assert record["reconcile_count"] >= 1 and record["source"] == "retrieve"
    assert json.loads(run(env, "--json", "failed").stdout) == {"count": 0, "data": []}
    assert metric(httpx.get(f"{base}/metrics", headers=auth, timeout=10).text, "aistats_failed_jobs") == 0


def test_requeue_usage_and_unknown_job(env, receiver):
    assert "give a JOB_ID or --all" in one_line_error(run(env, "requeue"))
    assert one_line_error(run(env, "requeue", "nope")) == "aistats-hooks: no failed job 'nope' (see `failed`)"
    assert json.loads(run(env, "--json", "requeue", "--all").stdout) == {"requeued": 0}
    base, auth = receiver[0].url, {"Authorization": f"Bearer {env['QUERY_API_TOKEN']}"}
    post = lambda body: httpx.post(f"{base}/jobs/failed/requeue", json=body, headers=auth, timeout=10)  # noqa: E731
    assert post({"job_id": "nope"}).status_code == 404
    assert post({"all": True}).json() == {"requeued": 0}
    for bad in ({}, {"job_id": "a", "all": True}, {"all": "yes"}, {"job_id": 5}, {"other": 1}, []):
        answer = post(bad)
        assert answer.status_code == 400 and answer.json()["error"] == "bad_request", bad
    assert httpx.post(f"{base}/jobs/failed/requeue", json={"all": True}, timeout=10).status_code == 401
    assert httpx.get(f"{base}/jobs/failed", params={"limit": "0"}, headers=auth, timeout=10).status_code == 400
