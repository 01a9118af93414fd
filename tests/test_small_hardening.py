"""Small refusals that must be 400s, and what one event id for two batches means."""

from __future__ import annotations

import logging

import pytest

from tests.helpers import make_event, signed


@pytest.mark.parametrize("after", [
    "99999999999999999999-0", "18446744073709551616-0", "1-18446744073709551616", "\uff11-1", "1-1\n", "abc",
    "1-", "(1-1", "1-1 ",
])
def test_a_malformed_changes_cursor_is_a_bad_request_not_a_store_failure(client, settings, after, caplog):
    with caplog.at_level(logging.INFO, logger="aistats_hooks.web"):
        resp = client.get("/changes", query_string={"after": after},
                          headers={"Authorization": f"Bearer {settings.query_api_token}"})
    assert resp.status_code == 400 and resp.json["error"] == "bad_request" and "cursor" in resp.json["reason"]
    assert not [r for r in caplog.records if "redis unavailable" in r.getMessage()]


def test_the_largest_cursors_are_answered(client, settings):
    auth = {"Authorization": f"Bearer {settings.query_api_token}"}
    for after in ("18446744073709551615-18446744073709551615", "18446744073709551615-0", "0-0"):
        resp = client.get("/changes", query_string={"after": after}, headers=auth)
        assert resp.status_code == 200 and resp.json == {"data": [], "next_cursor": after}


def test_one_event_id_for_two_batches_is_two_events(client, store):
    # Deduplication is per batch: (batch id, event id). The gateway's ids name their batch, so the same id
    # for another batch is another event (signed like any other); it is recorded and reconciled for that
    # batch only, and the retrieve decides what either batch is.
    first, second = make_event("b_one"), make_event("b_two")
    second["id"] = first["id"]
    answers = []
    for event in (first, second, first, second):
        body, headers = signed(event)
        answers.append(client.post("/webhooks/aistats", data=body, headers=headers))
    assert [r.status_code for r in answers] == [202, 202, 200, 200]
    assert [r.json["status"] for r in answers[2:]] == ["duplicate", "duplicate"]
    for batch_id in ("b_one", "b_two"):
        (event,) = store.events(batch_id)
        assert event["id"] == first["id"] and event["outcome"] == "queued" and event["duplicates"] == 1
    assert store.queue.count == 2


@pytest.mark.timeout(60)
def test_the_launchers_files_in_the_data_folder_are_private(tmp_path):
    import importlib
    import os
    import stat

    from aistats_hooks.launcher import sandbox
    from aistats_hooks.launcher.environ import free_port

    demo = importlib.import_module("aistats_hooks.launcher.demo")  # the package's ``demo`` is a function

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AISTATS_", "REDIS_", "QUERY_"))}
    proc = sandbox.start(env, data, free_port(), 60)
    try:
        assert demo._create(env, 0, data) is None  # no gateway configured: the CLI refuses, the input file is kept
    finally:
        sandbox.stop(proc)
    names = {p.name for p in data.iterdir()}
    assert {"sandbox.log", "demo-input-1.jsonl"} <= names, names
    for path in data.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
