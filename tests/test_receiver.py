"""POST /webhooks/aistats: verification, validation, dedupe and the atomic ack."""

from __future__ import annotations

import json
import time

import pytest
import redis

from aistats_hooks.errors import ConfigError
from aistats_hooks.store import Store
from aistats_hooks.web import create_app
from tests.helpers import make_event, signed


def post(client, body, headers):
    return client.post("/webhooks/aistats", data=body, headers=headers)


def queued_jobs(store: Store) -> int:
    return store.queue.count


def test_signed_delivery_is_recorded_and_queued(client, store):
    body, headers = signed(make_event("batch_a"))
    resp = post(client, body, headers)
    assert resp.status_code == 202
    assert resp.json["status"] == "queued" and resp.json["event_id"] == "evt_batch_batch_a_batch_completed"
    assert queued_jobs(store) == 1
    event = store.event("evt_batch_batch_a_batch_completed", "batch_a")
    assert event["body"] == body.decode()
    assert event["headers"]["x-phaseo-signature"] == headers["x-phaseo-signature"]
    assert event["attempt"] == 1 and event["outcome"] == "queued"
    assert abs(event["received_at"] / 1000 - time.time()) < 60


def test_duplicate_event_queues_nothing(client, store):
    body, headers = signed(make_event("batch_a"))
    assert post(client, body, headers).status_code == 202
    # A retry: same event id, new attempt, fresh signature.
    body2, headers2 = signed(make_event("batch_a"), attempt=2)
    resp = post(client, body2, headers2)
    assert resp.status_code == 200 and resp.json["status"] == "duplicate"
    assert queued_jobs(store) == 1
    assert store.event("evt_batch_batch_a_batch_completed", "batch_a")["duplicates"] == 1


def test_same_delivery_key_on_two_batches_is_not_a_duplicate(client, store):
    for batch_id in ("batch_a", "batch_b"):
        body, headers = signed(make_event(batch_id))
        assert post(client, body, headers).json["status"] == "queued"
    assert queued_jobs(store) == 2


def test_many_events_for_one_batch_coalesce_into_one_job(client, store):
    for pct in range(10, 100, 10):
        body, headers = signed(make_event("batch_c", "batch.progress", key=f"batch.progress:{pct}"))
        assert post(client, body, headers).status_code == 202
    assert queued_jobs(store) == 1
    outcomes = [e["outcome"] for e in store.events("batch_c")]
    assert outcomes == ["queued"] + ["coalesced"] * 8


def test_non_batch_event_is_ignored_and_recorded(client, store):
    event = make_event("video_1", "video.completed")
    body, headers = signed(event)
    resp = post(client, body, headers)
    assert resp.status_code == 202 and resp.json["status"] == "ignored"
    assert queued_jobs(store) == 0
    assert store.event(event["id"], event["data"]["id"])["outcome"] == "ignored"


@pytest.mark.parametrize("mutate,reason", [
    (lambda b, h: (b.replace(b'"completed"', b'"failed"', 1), h), "mismatch"),
    (lambda b, h: (b, {**h, "x-phaseo-signature": "v1=" + "0" * 64}), "mismatch"),
    (lambda b, h: (b, {k: v for k, v in h.items() if k != "x-phaseo-signature"}), "missing_header"),
    (lambda b, h: (b, {k: v for k, v in h.items() if k != "x-phaseo-timestamp"}), "missing_header"),
    (lambda b, h: (b, {**h, "x-phaseo-timestamp": "soon"}), "bad_timestamp"),
])
def test_forged_requests_are_refused(client, store, mutate, reason):
    body, headers = signed(make_event("batch_f"))
    body, headers = mutate(body, headers)
    resp = post(client, body, headers)
    assert resp.status_code == 401
    assert resp.json == {"error": "invalid_signature", "reason": reason}
    assert queued_jobs(store) == 0
    assert store.event("evt_batch_batch_f_batch_completed", "batch_f") is None
    assert store.counters("rejected")[reason] == 1


def test_wrong_secret_and_stale_timestamp_are_refused(client, store):
    body, headers = signed(make_event("batch_f"), secret="whsec_other")
    assert post(client, body, headers).json["reason"] == "mismatch"
    body, headers = signed(make_event("batch_f"), timestamp=int(time.time()) - 301)
    assert post(client, body, headers).json["reason"] == "stale"
    assert queued_jobs(store) == 0


def test_rotated_secrets_both_verify(settings, redis_client):
    app = create_app(settings.replace(webhook_secrets=("whsec_new", "whsec_test_secret")))
    client = app.test_client()
    for i, secret in enumerate(("whsec_new", "whsec_test_secret")):
        body, headers = signed(make_event(f"batch_r{i}"), secret=secret)
        assert post(client, body, headers).status_code == 202


def test_oversize_body_is_refused_without_reading_it(client, store, settings):
    body = b"{" + b" " * settings.max_body_bytes + b"}"
    _, headers = signed(make_event("batch_big"))
    resp = post(client, body, headers)
    assert resp.status_code == 413 and resp.json["error"] == "payload_too_large"
    assert queued_jobs(store) == 0


@pytest.mark.parametrize("body,reason", [
    (b"not json", "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (b"\xff\xfe", "invalid_json"),
    (b"[" * 5000, "invalid_json"),
    (b'{"id":' + b"1" * 5000 + b"}", "invalid_json"),
    (json.dumps({"type": "batch.completed", "data": {"id": "b"}}).encode(), "missing_id"),
    (json.dumps({"id": "evt_1", "data": {"id": "b"}}).encode(), "missing_type"),
    (json.dumps({"id": "evt_1", "type": "batch.completed"}).encode(), "missing_data"),
    (json.dumps({"id": "evt_1", "type": "batch.completed", "data": {}}).encode(), "missing_data_id"),
    (json.dumps({"id": "x" * 300, "type": "batch.completed", "data": {"id": "b"}}).encode(), "invalid_id"),
])
def test_malformed_bodies_get_400_with_reason(client, store, body, reason):
    from aistats_hooks.rules.signatures import sign_headers

    headers = sign_headers("whsec_test_secret", body)
    resp = post(client, body, headers)
    assert resp.status_code == 400
    assert resp.json == {"error": "invalid_payload", "reason": reason}
    assert queued_jobs(store) == 0


def test_header_event_id_must_match_body(client, store):
    body, headers = signed(make_event("batch_m"))
    headers["x-phaseo-event-id"] = "evt_other"
    assert post(client, body, headers).json["reason"] == "event_id_mismatch"


@pytest.mark.slow
def test_redis_down_answers_503_and_records_nothing(settings, redis_client):
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    app = create_app(settings, redis=dead)
    body, headers = signed(make_event("batch_down"))
    resp = app.test_client().post("/webhooks/aistats", data=body, headers=headers)
    assert resp.status_code == 503 and resp.json["error"] == "store_unavailable"
    # Nothing reached the real Redis either: the gateway's retry will be new to us.
    live = Store(redis_client, settings)
    assert live.event("evt_batch_batch_down_batch_completed", "batch_down") is None
    assert live.queue.count == 0


def test_refuses_to_start_without_a_secret(settings):
    with pytest.raises(ConfigError) as info:
        create_app(settings.replace(webhook_secrets=()))
    assert info.value.variable == "AISTATS_WEBHOOK_SECRET"


def test_unsigned_mode_must_be_explicit_and_warns(settings, caplog):
    app = create_app(settings.replace(webhook_secrets=(), allow_unsigned=True))
    assert "UNSIGNED" in caplog.text
    body, _ = signed(make_event("batch_u"))
    resp = app.test_client().post("/webhooks/aistats", data=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 202


def test_errors_are_json_everywhere(client):
    assert client.get("/nowhere").json["error"] == "not_found"
    resp = client.get("/webhooks/aistats")
    assert resp.status_code == 405 and resp.json["error"] == "method_not_allowed"
    assert client.get("/healthz").json == {"status": "ok"}


def test_acknowledged_batch_is_visible_to_the_sweep_even_if_its_job_is_lost(client, store):
    body, headers = signed(make_event("batch_lost"))
    assert post(client, body, headers).status_code == 202
    # A worker SIGKILLed before saving anything: the job and its slot are gone.
    store.redis.delete(store.queue.key, store.keys.pending("batch_lost"))
    assert "batch_lost" in store.due_for_sweep(time.time() + 1)


def test_a_duplicate_enqueues_the_job_a_crash_left_unqueued(client, store):
    body, headers = signed(make_event("batch_k"))
    assert post(client, body, headers).json["job"] == "queued"
    # The web process died after INGEST and before the enqueue: the slot names a job RQ never got.
    (job_id,) = store.queue.job_ids
    store.queue.remove(job_id)
    store.redis.delete(store.queue.job_class.key_for(job_id))
    assert store.queue.count == 0 and store.redis.get(store.keys.pending("batch_k")).decode() == job_id
    # Another delivery coalesces into that slot...
    other, other_headers = signed(make_event("batch_k", "batch.progress", key="batch.progress:90"))
    assert post(client, other, other_headers).json["job"] == "coalesced"
    # ...and the gateway's retry of the unanswered one, a duplicate, makes the job exist.
    assert post(client, body, headers).json["status"] == "duplicate"
    assert store.queue.job_ids == [job_id]
    assert store.queue.fetch_job(job_id).args == ("batch_k",)
    # A second duplicate changes nothing.
    assert post(client, body, headers).json["status"] == "duplicate"
    assert store.queue.count == 1


def test_a_follow_up_within_the_debounce_window_is_scheduled_through_rq(client, store):
    store.redis.set(store.keys.recent("batch_s"), "1", px=60_000)  # a retrieve just happened
    body, headers = signed(make_event("batch_s"))
    assert post(client, body, headers).json["job"] == "queued"
    assert store.queue.count == 0
    (late,) = store.queue.scheduled_job_registry.get_job_ids()
    assert store.redis.get(store.keys.pending("batch_s")).decode() == late
    # Due when the window ends, not before: a running job does not take it ahead.
    (due_ms,) = [score for _, score in store.redis.zrange(store.keys.due, 0, -1, withscores=True)]
    assert due_ms > time.time() * 1000 + 50_000
    body, headers = signed(make_event("batch_s", "batch.progress", key="batch.progress:90"))
    assert post(client, body, headers).json["job"] == "coalesced"


def test_the_sweep_replaces_a_job_waiting_longer_than_its_period(client, store):
    body, headers = signed(make_event("batch_w"))
    post(client, body, headers)
    # The job sits in a dead worker's hands with status 'queued'.
    store.redis.lpop(store.queue.key)
    assert store.request_reconcile("batch_w") == "coalesced"
    store.redis.expire(store.keys.pending("batch_w"), 900 - 60)  # it has waited a minute
    assert store.request_reconcile("batch_w", max_pending_age=30) == "queued"
    assert store.queue.count == 1


def test_oversize_chunked_body_is_refused_over_real_http(app, store, settings):
    import httpx

    from tests.helpers import Served

    served = Served(app)
    try:
        _, headers = signed(make_event("batch_chunked"))
        chunks = (b"x" * 65536 for _ in range(settings.max_body_bytes // 65536 + 2))  # no Content-Length
        resp = httpx.post(served.url + "/webhooks/aistats", content=chunks, headers=headers, timeout=30)
    finally:
        served.stop()
    assert resp.status_code == 413 and resp.json()["error"] == "payload_too_large"
    assert store.queue.count == 0
