"""Hostile deliveries at the receiver: parse-time bounds, colliding event ids, storage per batch, ids that name no batch.

Signed deliveries through the real Flask app and a real Redis.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import make_event, signed


def post(client, event=None, *, body=None, headers=None):
    if event is not None:
        body, headers = signed(event)
    return client.post("/webhooks/aistats", data=body, headers=headers)


def signed_raw(body: bytes, event_id: str = "evt_raw", event_type: str = "batch.completed"):
    from aistats_hooks.rules.signatures import sign_headers

    return body, sign_headers("whsec_test_secret", body, event_id=event_id, event_type=event_type,
                              delivery_key=event_type, attempt=1)


def test_ids_that_collide_with_bookkeeping_are_separate_events(client, store):
    # Item 5: `x` and `x#d` made the events page answer 500 and every redelivery of `x` 503.
    for event_id in ("x", "x#d", "#d=x", "=x"):
        event = make_event("b1", "batch.progress", key="batch.progress:" + event_id, status="in_progress")
        event["id"] = event_id
        assert post(client, event).status_code == 202
    again = make_event("b1", "batch.progress", key="batch.progress:x", status="in_progress")
    again["id"] = "x"
    assert post(client, again).json == {"status": "duplicate", "event_id": "x"}
    resp = client.get("/batches/b1/events", headers={"Authorization": f"Bearer {store.settings.query_api_token}"})
    assert resp.status_code == 200
    events = {e["id"]: e for e in store.events("b1")}
    assert set(events) == {"x", "x#d", "#d=x", "=x"}
    assert events["x"]["duplicates"] == 1 and events["x#d"]["duplicates"] == 0
    assert events["x#d"]["outcome"] in ("queued", "coalesced")


def test_a_forged_id_cannot_take_the_genuine_terminal_events_place(client, store):
    # Item 5: a forged `~batch.completed` made the genuine evt_batch_<id>_batch.completed answer duplicate.
    forged = make_event("b2")
    forged["id"] = "~batch_completed"
    assert post(client, forged).status_code == 202
    genuine = make_event("b2")
    assert genuine["id"] == "evt_batch_b2_batch_completed"
    assert post(client, genuine).json["status"] == "queued"
    assert {e["id"] for e in store.events("b2")} == {"~batch_completed", "evt_batch_b2_batch_completed"}


def test_what_one_batch_stores_is_bounded(settings, client, store):
    # Item 6: 199 signed 1 MiB events to one batch grew one hash to 183 MB.
    limit = settings.max_batch_events
    for i in range(limit):
        assert post(client, make_event("flood", "batch.progress", key=f"batch.progress:{i}")).status_code == 202
    resp = post(client, make_event("flood", "batch.progress", key="batch.progress:over"))
    assert resp.status_code == 202
    assert resp.json == {"status": "ignored", "event_id": "evt_batch_flood_batch_progress_over",
                         "reason": "batch_event_limit"}
    assert len(store.events("flood")) == limit
    assert store.counters("deliveries")["limited"] == 1
    # Bytes: big (incompressible) bodies fill a batch long before its event count.
    sizes = 0
    for i in range(20):
        event = make_event("big", "batch.progress", key=f"batch.progress:{i}")
        event["data"]["metadata"] = {"blob": __import__("os").urandom(30_000).hex()}
        answer = post(client, event).json
        if answer["status"] == "ignored":
            break
        sizes += 1
    assert answer.get("reason") == "batch_event_limit" and 0 < sizes < 20
    stored = sum(len(v) for v in store.redis.hgetall(store.keys.events("big")).values())
    assert stored <= settings.max_batch_bytes
    # A retry of a stored event is still a duplicate, not limited.
    assert post(client, make_event("flood", "batch.progress", key="batch.progress:0")).json["status"] == "duplicate"


@pytest.mark.parametrize("batch_id", [".", "..", "a/b", "a\\b", "a\x00b", "tab\there", "x" * 257])
def test_ids_that_cannot_name_a_batch_are_refused(client, store, batch_id):
    # Item 7: `.` and `..` were queued, and looped in the sweep forever.
    event = make_event("placeholder")
    event["data"]["id"] = batch_id
    event["id"] = "evt_bad_id"
    resp = post(client, event)
    assert resp.status_code == 400 and resp.json["error"] == "invalid_payload"
    assert resp.json["reason"] in ("invalid_data_id",)
    assert store.queue.count == 0


@pytest.mark.parametrize("poison,reason", [
    (b'{"a":' * 700 + b"1" + b"}" * 700, "too_deep"),
    (b"[" * 40 + b"]" * 40, "too_deep"),
    (b"NaN", "non_finite_number"),
    (b"Infinity", "non_finite_number"),
    (b"-Infinity", "non_finite_number"),
    (b"1e400", "non_finite_number"),
])
def test_poison_values_are_refused_at_parse_time(client, store, poison, reason):
    # Item 4: 700-deep metadata and Infinity were stored and broke every later reconcile.
    event = make_event("b3")
    body = json.dumps(event).encode().replace(b'"metadata": {', b'"poison": ' + poison + b', "metadata": {', 1)
    assert b"poison" in body
    resp = post(client, body=body, headers=signed_raw(body, event["id"])[1])
    assert resp.status_code == 400 and resp.json["reason"] == reason
    assert store.events("b3") == []


def test_too_many_values_and_too_long_strings_are_refused(client):
    event = make_event("b4")
    event["data"]["metadata"] = {f"k{i}": i for i in range(20_000)}
    body = json.dumps(event).encode()
    assert post(client, body=body, headers=signed_raw(body, event["id"])[1]).json["reason"] == "too_many_values"
    event["data"]["metadata"] = {"s": "x" * 70_000}
    body = json.dumps(event).encode()
    assert post(client, body=body, headers=signed_raw(body, event["id"])[1]).json["reason"] == "string_too_long"
