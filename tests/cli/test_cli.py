"""The CLI, command by command, against a real Redis and a real sandbox gateway on loopback.

Each command runs through click's CliRunner with the environment a user
would export; the receiver is the real app served on a loopback port, so
`create-batch` webhooks and `trigger` deliveries travel over HTTP and are
verified with the configured secret. Error paths must print exactly one
line on stderr and exit non-zero (2 for configuration errors).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from aistats_hooks.cli.trigger import _headers as trigger_headers, sample_event
from aistats_hooks.web import create_app
from tests.cli.conftest import CLEARED, ROOT, create, one_line_error, run, sandbox_truth
from tests.helpers import Served, run_worker, wait_for

# -- create-batch ----------------------------------------------------------------

def test_create_batch_tracks_it_and_its_signed_webhooks_arrive(env, store, sandbox, settings):
    batch_id = create(env, "--session-id", "cli-run", "--events", "batch.created,batch.completed",
                      "--metadata", "team=search")
    assert batch_id.startswith("batch_") and "\n" not in batch_id
    record = store.get(batch_id)
    assert record is not None and record["source"] == "tracked" and record["session_id"] == "cli-run"
    # Tracked batches are open, so the sweep will poll them even if no webhook ever comes.
    assert batch_id in store.due_for_sweep(float("inf"))
    truth = sandbox_truth(sandbox, settings, batch_id)
    assert truth["webhook"]["endpoint_id"] == env["AISTATS_WEBHOOK_ENDPOINT_ID"]
    assert truth["webhook"]["url"] == env["PUBLIC_BASE_URL"] + "/webhooks/aistats"
    assert truth["webhook"]["events"] == ["batch.created", "batch.completed"]
    assert truth["metadata"] == {"sandbox_outcome": "completed", "sandbox_duration_s": "120", "team": "search"}
    # batch.created was signed with the endpoint's secret, stored by `endpoints create`: accepted.
    events = wait_for(lambda: store.events(batch_id), timeout=20)
    assert events[0]["type"] == "batch.created" and events[0]["outcome"] == "queued"
    assert not store.counters("rejected")


def test_create_batch_json_and_endpoint_id(env, store, sandbox, settings):
    endpoint_id = env["AISTATS_WEBHOOK_ENDPOINT_ID"]
    result = run(env, "--json", "create-batch", "--endpoint", "responses", "--input-file-id", "file_x",
                 "--webhook-endpoint-id", endpoint_id, AISTATS_WEBHOOK_ENDPOINT_ID=None)
    assert result.exit_code == 0, result.output
    batch = json.loads(result.stdout)
    assert batch["id"].startswith("batch_") and batch["object"] == "batch"
    assert store.get(batch["id"])["status"] == "pending"
    assert sandbox_truth(sandbox, settings, batch["id"])["webhook"]["endpoint_id"] == endpoint_id
    # --json also works after the command; without a webhook the gateway omits it.
    result = run(env, "create-batch", "--endpoint", "responses", "--input-file-id", "file_x", "--no-webhook", "--json")
    assert result.exit_code == 0, result.output
    assert "webhook" not in json.loads(result.stdout)
    # An endpoint the gateway does not know: its refusal, in one line.
    line = one_line_error(run(env, "create-batch", "--endpoint", "responses", "--input-file-id", "f",
                              "--webhook-endpoint-id", "we_unknown"))
    assert "gateway error" in line


def test_create_batch_error_paths(env):
    line = one_line_error(run(env, "create-batch", "--endpoint", "responses", "--input-file-id", "f",
                              AISTATS_WEBHOOK_ENDPOINT_ID=None), code=2)
    assert "AISTATS_WEBHOOK_ENDPOINT_ID" in line and "endpoints create" in line
    line = one_line_error(run(env, "create-batch", "--endpoint", "responses", "--input-file-id", "f",
                              "--no-webhook", "--events", "batch.created"))
    assert "--no-webhook" in line
    line = one_line_error(run(env, "create-batch", "--endpoint", "responses", "--input-file-id", "f",
                              AISTATS_API_KEY=None), code=2)
    assert "AISTATS_API_KEY" in line
    line = one_line_error(run(env, "create-batch", "--endpoint", "responses", "--input-file-id", "f",
                              "--metadata", "novalue"))
    assert "KEY=VALUE" in line
    line = one_line_error(run(env, "create-batch", "--endpoint", "responses", "--input-file-id", "f",
                              "--events", "batch.finished"))
    assert "batch.finished" in line
    line = one_line_error(run(env, "create-batch", "--input-file-id", "f"))
    assert "--endpoint" in line
    # The gateway refuses the key: one line, exit 1, and the key never printed.
    result = run(env, "create-batch", "--endpoint", "responses", "--input-file-id", "f",
                 AISTATS_API_KEY="sk_wrong_key_123456")
    line = one_line_error(result)
    assert "AuthenticationError" in line and "sk_wrong_key_123456" not in result.output


# -- upload ------------------------------------------------------------------------

def test_upload(env, tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text('{"custom_id": "1"}\n{"custom_id": "2"}\n')
    result = run(env, "upload", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().startswith("file_")
    result = run(env, "upload", str(path), "--json")
    assert json.loads(result.stdout)["filename"] == "requests.jsonl"
    assert "does not exist" in one_line_error(run(env, "upload", str(tmp_path / "missing.jsonl")))


# -- status / cancel ---------------------------------------------------------------

def test_status_local_remote_and_unknown(env, store):
    batch_id = create(env)
    result = run(env, "status", batch_id)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    # The sandbox answers create with `validating`: said beside our folded status, and where each field came from.
    assert lines[0] == f"{batch_id}  pending  (the gateway says 'validating')"
    assert "  source: created here; no retrieve from the gateway has succeeded yet" in lines
    record = json.loads(run(env, "status", batch_id, "--json").stdout)
    assert record == store.get(batch_id)
    assert record["tracked_at"].endswith("Z") and f"  tracked: {record['tracked_at']} (here)" in lines
    assert f"  created: {record['created_at']} (gateway)" in lines
    remote = json.loads(run(env, "--json", "status", batch_id, "--remote").stdout)
    assert remote["id"] == batch_id and remote["object"] == "batch"
    assert "no batch 'batch_nope'" in one_line_error(run(env, "status", "batch_nope"))
    assert "NotFoundError" in one_line_error(run(env, "status", "batch_nope", "--remote"))


def test_cancel_asks_the_gateway_and_queues_a_reconcile(env, store, sandbox, settings):
    batch_id = create(env, duration=3600)
    wait_for(lambda: sandbox_truth(sandbox, settings, batch_id)["status"] == "in_progress", timeout=20)
    result = run(env, "cancel", batch_id)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"cancel requested for {batch_id}")
    assert sandbox_truth(sandbox, settings, batch_id)["status"] in ("cancelling", "cancelled")
    assert store.queue.count >= 1
    assert "NotFoundError" in one_line_error(run(env, "cancel", "batch_nope"))


# -- reconcile / events / replay ---------------------------------------------------

def test_reconcile_queues_coalesces_and_runs_now(env, store):
    batch_id = create(env, "--no-webhook")
    assert run(env, "reconcile", batch_id).stdout.strip() == f"{batch_id}  queued"
    assert run(env, "reconcile", batch_id).stdout.strip() == f"{batch_id}  coalesced"
    result = run(env, "reconcile", batch_id, "--now")
    assert result.exit_code == 0 and result.stdout.strip() == f"{batch_id}  reconciled"
    assert store.get(batch_id)["source"] == "retrieve"
    # The queued job then runs in a real RQ worker.
    run_worker(store)
    assert store.get(batch_id)["reconcile_count"] == 2


def test_reconcile_all_open(env, store):
    first, second = create(env, "--no-webhook"), create(env, "--no-webhook")
    result = run(env, "--json", "reconcile", "--all-open", "--now")
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)["results"]
    assert results[first] == results[second] == "reconciled"


def test_reconcile_usage_errors(env):
    assert "BATCH_ID or --all-open" in one_line_error(run(env, "reconcile"))
    assert "BATCH_ID or --all-open" in one_line_error(run(env, "reconcile", "b", "--all-open"))
    assert "--force needs --now" in one_line_error(run(env, "reconcile", "b", "--force"))
    # A batch unknown here is asked about upstream first: a typo queues nothing and leaves no row.
    assert one_line_error(run(env, "reconcile", "batch_unknown")) == (
        "aistats-hooks: the gateway knows no batch 'batch_unknown' for this API key; nothing queued")
    line = one_line_error(run(env, "reconcile", "batch_unknown", "--now", AISTATS_BASE_URL="http://127.0.0.1:9/v1",
                              AISTATS_UPSTREAM_TIMEOUT="1"))
    assert "UpstreamUnavailable" in line


def test_events_and_replay(env, store):
    batch_id = create(env, "--events", "batch.created")
    wait_for(lambda: store.events(batch_id), timeout=20)
    result = run(env, "events", batch_id)
    assert result.exit_code == 0
    row = result.stdout.strip().splitlines()[0]
    event_id = f"evt_batch_{batch_id}_batch_created"
    assert event_id in row and "batch.created" in row and "attempt=1" in row
    listed = json.loads(run(env, "events", batch_id, "--json").stdout)
    assert [e["id"] for e in listed["data"]] == [event_id] and "body" not in listed["data"][0]
    assert "payload" in json.loads(run(env, "events", batch_id, "--json", "--payload").stdout)["data"][0]

    run_worker(store)  # empty the queue, so the replay queues afresh
    result = run(env, "replay", event_id, "--batch", batch_id)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"1 event(s) of {batch_id}: reconcile queued"
    assert json.loads(run(env, "replay", "--batch", batch_id, "--json").stdout) == {
        "batch_id": batch_id, "events": [event_id], "reconcile": "coalesced",
    }
    assert store.queue.count == 1

    assert "no batch 'batch_nope'" in one_line_error(run(env, "events", "batch_nope"))
    assert "no stored event" in one_line_error(run(env, "replay", "evt_nope", "--batch", batch_id))
    assert "--batch BATCH_ID" in one_line_error(run(env, "replay"))
    assert "--batch BATCH_ID" in one_line_error(run(env, "replay", event_id))


# -- trigger -----------------------------------------------------------------------

def test_trigger_sends_a_signed_delivery(env, store, receiver):
    result = run(env, "trigger", "batch.completed", "--batch", "batch_trig", "--url", receiver[0].url)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "batch.completed evt_batch_batch_trig_batch_completed -> 202 queued"
    event = store.event("evt_batch_batch_trig_batch_completed", "batch_trig")
    assert event["type"] == "batch.completed" and event["payload"]["data"]["status"] == "completed"
    # Same event again: deduplicated by the receiver, still a success.
    again = json.loads(run(env, "--json", "trigger", "completed", "--batch", "batch_trig").stdout)
    assert again["status"] == 200 and again["response"]["status"] == "duplicate"
    progress = json.loads(run(env, "--json", "trigger", "batch.progress", "--keep").stdout)
    assert progress["status"] == 202 and progress["event_id"].endswith("_batch_progress_50")
    assert store.counters("deliveries") == {"queued": 2, "duplicate": 1}


@pytest.mark.slow
def test_trigger_error_paths(env, receiver):
    # Signed with a secret the receiver does not know: it refuses, we say so in one line.
    line = one_line_error(run(env, "trigger", "batch.failed", AISTATS_WEBHOOK_SECRET="whsec_unknown_to_receiver"))
    assert "401" in line and "invalid_signature" in line and "whsec_unknown_to_receiver" not in line
    line = one_line_error(run(env, "trigger", "batch.completed", "--url", "http://127.0.0.1:9/webhooks/aistats"))
    assert "could not reach the receiver" in line
    assert "not an event type" in one_line_error(run(env, "trigger", "batch.exploded"))
    # No configured secret: it signs with the endpoint's stored one; with neither, it refuses.
    result = run(env, "trigger", "batch.completed", AISTATS_WEBHOOK_SECRET=None)
    assert result.exit_code == 0 and "202 queued" in result.stdout, result.output
    assert "AISTATS_WEBHOOK_SECRET" in one_line_error(run(env, "trigger", "batch.completed", AISTATS_WEBHOOK_SECRET=None,
                                                          AISTATS_KEY_PREFIX="no_stored_secrets"), code=2)


def test_trigger_unsigned_when_the_receiver_allows_it(env, settings):
    unsigned = settings.replace(webhook_secrets=(), allow_unsigned=True)
    served = Served(create_app(unsigned))
    try:
        result = run(env, "--json", "trigger", "batch.created", "--batch", "batch_unsigned", "--url", served.url,
                     AISTATS_WEBHOOK_SECRET=None, AISTATS_ALLOW_UNSIGNED="1")
    finally:
        served.stop()
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["response"]["status"] == "queued"
    # The same headers as a signed delivery, less the signature and its timestamp.
    event = sample_event("batch.created", "batch_unsigned")
    headers = trigger_headers(unsigned, event, b"{}")
    assert "x-phaseo-signature" not in headers and "x-phaseo-timestamp" not in headers
    assert headers["x-phaseo-event-id"] == event["id"] and headers["x-phaseo-max-attempts"] == "4"


# -- configuration and infrastructure errors ----------------------------------------

def test_malformed_setting_is_one_line_exit_2(env):
    line = one_line_error(run(env, "status", "b", AISTATS_WEBHOOK_TOLERANCE="abc"), code=2)
    assert "AISTATS_WEBHOOK_TOLERANCE" in line
    line = one_line_error(run(env, "config", REDIS_URL="http//nope"), code=2)
    assert "REDIS_URL" in line


def test_redis_down_is_one_line_exit_1(env):
    line = one_line_error(run(env, "status", "b", REDIS_URL="redis://127.0.0.1:9/0"))
    assert "Redis is unreachable at redis://127.0.0.1:9/0 (REDIS_URL)" in line


def test_config_masks_secrets(env):
    result = run(env, "config")
    assert result.exit_code == 0
    assert "AISTATS_WEBHOOK_SECRET=2 configured" in result.stdout
    for secret in (env["AISTATS_API_KEY"], env["QUERY_API_TOKEN"], "whsec_test_secret"):
        assert secret not in result.stdout


@pytest.mark.slow
def test_python_dash_m_entry_point(env):
    """The real process: `python -m aistats_hooks`, exit statuses and no traceback."""
    base = {k: v for k, v in os.environ.items() if k not in CLEARED}
    proc = subprocess.run([sys.executable, "-m", "aistats_hooks", "status", "b"], cwd=ROOT, capture_output=True,
                          text=True, env={**base, **env, "AISTATS_WEBHOOK_TOLERANCE": "abc"}, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "aistats-hooks: configuration error: AISTATS_WEBHOOK_TOLERANCE: expected a whole number from 1 to 86400, "
        "got 'abc'"
    ]
    proc = subprocess.run([sys.executable, "-m", "aistats_hooks", "--json", "status", "batch_nope"], cwd=ROOT,
                          capture_output=True, text=True, env={**base, **env}, timeout=60)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_uploads_are_checked_and_the_model_comes_from_the_rows(env, store, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    assert "batch_file_invalid_jsonl" in one_line_error(run(env, "upload", str(bad)))
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"custom_id": "a", "method": "POST", "url": "/v1/responses", '
                    '"body": {"model": "anthropic/claude-haiku-4-5", "input": "hi"}}\n')
    file_id = run(env, "upload", str(rows)).stdout.strip()
    batch = json.loads(run(env, "--json", "create-batch", "--endpoint", "responses", "--input-file-id", file_id,
                           "--model", "openai/gpt-5-nano").stdout)
    # The rows' model, not a random one nor the default: an Anthropic batch, in Anthropic's shape.
    assert (batch["provider"], batch["type"]) == ("anthropic", "message_batch")
    assert "openai_batch_completion_window_unsupported" in one_line_error(run(
        env, "create-batch", "--endpoint", "responses", "--input-file-id", file_id, "--completion-window", "3d"))


# Every command that needs Redis: with Redis down, the line says so (issue 28, item 7), whatever else is unset.
NEEDS_REDIS = (("list",), ("status", "b"), ("failed",), ("events", "b"), ("changes",), ("forwarding",),
               ("alerts",), ("billing",), ("requeue", "--all"), ("reconcile", "b"), ("replay", "--batch", "b"),
               ("forget", "b"), ("trigger", "completed"), ("archive", "b"))


@pytest.mark.parametrize("args", NEEDS_REDIS, ids=lambda a: a[0])
def test_redis_down_is_named_by_every_command(env, args, tmp_path):
    # No webhook secret configured: trigger used to blame AISTATS_WEBHOOK_SECRET, which Redis would have supplied.
    line = one_line_error(run(env, *args, REDIS_URL="redis://:pw@127.0.0.1:9/0", AISTATS_WEBHOOK_SECRET=None,
                              AISTATS_ARCHIVE_URL=f"file://{tmp_path}"))
    assert re.search(r"Redis is unreachable at redis://:\S+@127.0.0.1:9/0 \(REDIS_URL\): ConnectionError", line), line
    assert ":pw@" not in line


def test_version(env):
    from aistats_hooks import __version__

    result = run(env, "--version")
    assert result.exit_code == 0 and result.stdout == f"aistats-hooks {__version__}\n"


@pytest.mark.parametrize("port", ["abc", "0", "70000", "+80"])
def test_a_malformed_port_is_one_line_exit_2(env, port):
    line = one_line_error(run(env, "config", PORT=port), code=2)
    assert line == f"aistats-hooks: configuration error: PORT: expected a whole number from 1 to 65535, got {port!r}"


def test_the_web_process_refuses_a_malformed_port_at_start_up(env):
    """gunicorn imports app.py, which reads the settings: PORT=abc is one line and exit 2, not a bind error."""
    proc = subprocess.run([sys.executable, "-c", "import app"], cwd=ROOT, env={**os.environ, **env, "PORT": "abc"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "aistats-hooks: configuration error: PORT: expected a whole number from 1 to 65535, got 'abc'"]


def test_config_shows_the_port(env):
    result = run(env, "config", PORT="8123")
    assert result.exit_code == 0 and "PORT=8123" in result.stdout
