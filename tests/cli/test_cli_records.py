"""list, billing, track, forget, results, reconcile of an unknown id, trigger's clean-up, --json errors,
events --payload: against a real sandbox, receiver, Redis and RQ worker."""

from __future__ import annotations

import json

import pytest

from aistats_hooks.sdk import AIStats
from tests.cli.conftest import create, one_line_error, run
from tests.helpers import run_worker, spawn_worker, wait_for


def finished(env, store, batch_id: str) -> dict:
    def done():
        run(env, "reconcile", batch_id)
        run_worker(store)
        record = store.get(batch_id)
        return record if record and record["status"] == "completed" and record["billing"]["state"] == "settled" \
            else None
    return wait_for(done, timeout=60, interval=0.5)


def test_list_billing_forget_and_json_errors(env, store):
    batch_id = create(env, "--no-webhook", "--session-id", "s1", duration=30)
    record = finished(env, store, batch_id)
    nanos = record["billing"]["total_nanos"]
    assert nanos > 0

    listed = json.loads(run(env, "--json", "list", "--session-id", "s1").stdout)
    assert [r["id"] for r in listed["data"]] == [batch_id] and listed["next_cursor"] is None
    assert batch_id in run(env, "list", "--status", "completed").stdout
    assert run(env, "list", "--session-id", "nobody").stdout.strip() == "no batches"
    summary = json.loads(run(env, "billing", "--group-by", "session_id", "--json").stdout)
    assert summary["groups"] == [{"key": "s1", "total_nanos": nanos, "total_usd": summary["total_usd"]}]
    assert "--since is after --until" in one_line_error(run(env, "billing", "--since", "2030-01-02",
                                                            "--until", "2030-01-01"))

    # forget keeps billed money unless --force, and then removes exactly that contribution.
    refused = one_line_error(run(env, "forget", batch_id))
    assert "settled ledger contribution" in refused and "--force" in refused
    assert store.get(batch_id) is not None
    forgotten = json.loads(run(env, "--json", "forget", batch_id, "--force").stdout)
    assert forgotten == {"batch_id": batch_id, "forgotten": True, "ledger_nanos_removed": nanos}
    assert store.get(batch_id) is None and store.events(batch_id) == []
    assert json.loads(run(env, "--json", "list").stdout)["data"] == []
    assert json.loads(run(env, "--json", "billing").stdout)["total_nanos"] == 0

    # --json covers errors: one JSON object on stderr, nothing on stdout, the same exit status.
    for args in (["--json", "status", "batch_nope"], ["forget", batch_id, "--json"], ["--json", "list", "--limit", "0"]):
        result = run(env, *args)
        assert result.exit_code == 1 and result.stdout == "", args
        error = json.loads(result.stderr)["error"]
        assert error["exit_code"] == 1 and error["message"]


def test_track_a_batch_made_elsewhere_and_reconcile_of_an_unknown_id(env, store, sandbox):
    with AIStats(env["AISTATS_API_KEY"], env["AISTATS_BASE_URL"]) as client:
        elsewhere = client.create_batch({"endpoint": "/v1/responses", "input_file_id": "file_x",
                                         "completion_window": "24h"})["id"]
    assert store.get(elsewhere) is None
    tracked = json.loads(run(env, "--json", "track", elsewhere).stdout)
    assert tracked["record"]["id"] == elsewhere and tracked["reconcile"] == "queued"
    assert store.get(elsewhere)["source"] == "tracked"
    assert "knows no batch 'batch_nope'" in one_line_error(run(env, "track", "batch_nope"))
    # reconcile of an id unknown here: tracked from the gateway first, or refused without a row.
    other = client_batch(env)
    assert run(env, "reconcile", other).stdout.strip() == f"{other}  queued" and store.get(other)
    one_line_error(run(env, "reconcile", "batch_nope"))
    assert store.get("batch_nope") is None and store.events("batch_nope") == []


def client_batch(env) -> str:
    with AIStats(env["AISTATS_API_KEY"], env["AISTATS_BASE_URL"]) as client:
        return client.create_batch({"endpoint": "/v1/responses", "input_file_id": "file_y",
                                    "completion_window": "24h"})["id"]


def test_results_printed_or_saved(env, store, tmp_path):
    # 20 simulated minutes are 2 real seconds at the sandbox's 600x: long enough to ask while it runs,
    # even on a loaded machine (30 s were 50 ms, and the batch sometimes ended first).
    batch_id = create(env, "--no-webhook", duration=1200)
    assert "not ready" in one_line_error(run(env, "results", batch_id))
    finished(env, store, batch_id)
    rows = [json.loads(line) for line in run(env, "results", batch_id).stdout.splitlines()]
    assert rows and all("custom_id" in row for row in rows)
    saved = json.loads(run(env, "--json", "results", batch_id, "-o", str(tmp_path / "out.jsonl")).stdout)
    assert saved["bytes"] == (tmp_path / "out.jsonl").stat().st_size > 0
    assert "knows no batch" in one_line_error(run(env, "results", "batch_nope"))


def test_events_payload_without_json(env, store):
    batch_id = create(env, "--events", "batch.created")
    wait_for(lambda: store.events(batch_id), timeout=20)
    shown = run(env, "events", batch_id, "--payload").stdout
    assert '"type": "batch.created"' in shown and f'"id": "{batch_id}"' in shown


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_trigger_forgets_its_made_up_batch_after_the_worker_ran(env, store, receiver):
    worker = spawn_worker(env["AISTATS_QUEUE"], env, burst=False)
    try:
        answer = json.loads(run(env, "--json", "trigger", "batch.completed", "--wait", "60").stdout)
        assert answer["batch_id"].startswith("batch_trigger_") and answer["forgotten"] is True
        assert store.get(answer["batch_id"]) is None and store.events(answer["batch_id"]) == []
        kept = json.loads(run(env, "--json", "trigger", "batch.failed", "--keep").stdout)
        assert "forgotten" not in kept and store.events(kept["batch_id"])
    finally:
        worker.terminate()
        worker.wait(timeout=30)
