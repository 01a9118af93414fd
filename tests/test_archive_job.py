"""Archiving end to end: a batch ends in the sandbox, a real RQ worker reconciles it, the archive job keeps its files."""

from __future__ import annotations

import hashlib
import json
import pytest
from rq import Queue, SimpleWorker

from aistats_hooks.effects import archiving
from aistats_hooks.sandbox import SandboxServer
from aistats_hooks.sdk import AIStats
from tests.helpers import wait_for

ROWS = b"".join(b'{"custom_id":"a%d","body":{"model":"openai/gpt-5-mini","input":"hi"}}\n' % n for n in range(5))


@pytest.fixture
def archived_env(settings, monkeypatch, tmp_path):
    from workers import context

    sandbox = SandboxServer(api_key=settings.api_key, speed=600.0, seed=7).start()
    env = {"REDIS_URL": settings.redis_url, "AISTATS_API_KEY": settings.api_key, "AISTATS_BASE_URL": sandbox.base_url,
           "AISTATS_KEY_PREFIX": settings.key_prefix, "AISTATS_QUEUE": settings.queue_name,
           "AISTATS_WEBHOOK_SECRET": "whsec_test_secret", "AISTATS_DEBOUNCE_MS": "0",
           "AISTATS_ARCHIVE_URL": f"file://{tmp_path}/archive"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    context.current.cache_clear()
    yield sandbox, tmp_path / "archive"
    context.current.cache_clear()
    sandbox.stop()


def work(store, settings) -> None:
    queues = [store.queue, Queue(archiving.queue_name(settings), connection=store.redis)]
    SimpleWorker(queues, connection=store.redis).work(burst=True, with_scheduler=False)


def test_an_ended_batch_is_archived_once_with_checksums_equal_to_the_gateways_file(archived_env, settings, client,
                                                                                    store):
    sandbox, root = archived_env
    sdk = AIStats(settings.api_key, sandbox.base_url)
    file_id = sdk.upload_file(ROWS, filename="a.jsonl")["id"]
    batch = sdk.create_batch({"endpoint": "/v1/responses", "input_file_id": file_id,
                              "metadata": {"sandbox_outcome": "completed", "sandbox_duration_s": "60"}})
    real = wait_for(lambda: (b := sdk.retrieve_batch(batch["id"]))["status"] == "completed" and b, timeout=60)
    from workers import context

    context.current()  # the worker's first job builds this; the archiver's group starts before the batch ends here
    store.request_reconcile(batch["id"], debounce=False)
    work(store, settings)

    state = archiving.read_state(store.redis, store.keys, batch["id"])
    assert state and state["status"] == "archived", state
    folders = list(root.glob(f"*/*/*/{batch['id']}"))
    assert len(folders) == 1
    manifest = json.loads((folders[0] / "manifest.json").read_text())
    sdk.download_file(real["output_file_id"], str(folders[0].parent / "truth.jsonl"))
    truth = (folders[0].parent / "truth.jsonl").read_bytes()
    assert manifest["files"]["output.jsonl"]["sha256"] == hashlib.sha256(truth).hexdigest()
    assert (folders[0] / "output.jsonl").read_bytes() == truth
    assert manifest["record"]["id"] == batch["id"] and manifest["record"]["status"] == "completed"

    shown = client.get(f"/batches/{batch['id']}", headers={"Authorization": f"Bearer {settings.query_api_token}"}).json
    assert shown["archive"]["status"] == "archived" and "output.jsonl" in shown["archive"]["files"]

    # Asked again (the CLI's `archive BATCH_ID`): verified, nothing rewritten.
    stamp = (folders[0] / "output.jsonl").stat().st_mtime_ns
    assert archiving.enqueue(store.redis, store.keys, settings, batch["id"])
    work(store, settings)
    assert (folders[0] / "output.jsonl").stat().st_mtime_ns == stamp
    assert int(store.redis.hget(archiving.counters_key(store.keys), "files")) == len(manifest["files"])
    assert archiving.missing(store.redis, store.keys) == []
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {settings.query_api_token}"}).get_data(
        as_text=True)
    written = sum(f["bytes"] for f in manifest["files"].values())
    assert f"aistats_archive_files_total {float(len(manifest['files']))}" in metrics
    assert f"aistats_archive_bytes_total {float(written)}" in metrics
    sdk.close()


def test_the_archive_command_verifies_finds_damage_and_queues_the_missing(archived_env, settings, store, monkeypatch):
    from aistats_hooks.cli import main

    sandbox, root = archived_env
    sdk = AIStats(settings.api_key, sandbox.base_url)
    file_id = sdk.upload_file(ROWS, filename="a.jsonl")["id"]
    ids = [sdk.create_batch({"endpoint": "/v1/responses", "input_file_id": file_id,
                             "metadata": {"sandbox_outcome": "completed", "sandbox_duration_s": "60"}})["id"]
           for _ in range(2)]
    for one in ids:
        wait_for(lambda: sdk.retrieve_batch(one)["status"] == "completed", timeout=60)
    from workers import context

    context.current()
    for one in ids:
        store.request_reconcile(one, debounce=False)
    work(store, settings)
    assert archiving.missing(store.redis, store.keys) == []
    assert main(["archive", "--verify"]) == 0

    (next(root.glob(f"*/*/*/{ids[0]}")) / "output.jsonl").write_bytes(b"damaged\n")
    assert main(["archive", "--verify"]) == 1

    store.redis.delete(archiving.state_key(store.keys, ids[1]))  # as if its job never ran
    assert archiving.missing(store.redis, store.keys) == [ids[1]]
    assert main(["archive", "--missing"]) == 0
    assert main(["archive", ids[0]]) == 0
    work(store, settings)
    assert archiving.missing(store.redis, store.keys) == []
    assert main(["archive", "--verify"]) == 0  # the damaged file was rewritten, the whole ones left alone

    monkeypatch.delenv("AISTATS_ARCHIVE_URL")
    assert main(["archive", "--missing"]) == 1
    sdk.close()
