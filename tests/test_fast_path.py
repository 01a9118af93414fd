"""The webhook's WSGI fast path and INGEST's lean round trip: same answers, same guarantees."""

from __future__ import annotations

import re

import httpx
import pytest
from redis.connection import PythonRespSerializer

from aistats_hooks.signatures import sign_headers
from aistats_hooks.store import Store
from aistats_hooks.store.ingest import pack_command
from aistats_hooks.web import create_app
from aistats_hooks.web.fast_path import WebhookFastPath
from bench.redis_server import RedisServer
from tests.helpers import Served, make_event, signed
from werkzeug.test import Client


def cases(tag: str, max_body: int) -> list[tuple[bytes, dict]]:
    """Deliveries covering each answer: queued, duplicate, ignored, 401, 400, 413."""
    ok_body, ok_headers = signed(make_event(f"batch_{tag}"))
    again_body, again_headers = signed(make_event(f"batch_{tag}"), attempt=2)
    other_body, other_headers = signed(make_event(f"video_{tag}", "video.completed"))
    forged_body, forged_headers = signed(make_event(f"batch_{tag}f"), secret="whsec_not_ours_at_all")
    junk = b"not json"
    return [(ok_body, ok_headers), (again_body, again_headers), (other_body, other_headers),
            (forged_body, forged_headers), (junk, sign_headers("whsec_test_secret", junk)),
            (b"{" + b" " * max_body + b"}", ok_headers)]


def answers(wsgi, tag: str, max_body: int) -> list[tuple[int, str, dict]]:
    client = Client(wsgi)
    out = []
    for body, headers in cases(tag, max_body):
        resp = client.post("/webhooks/aistats", data=body, headers=headers)
        # The ids differ by tag between the two runs; the rest must be equal.
        answer = {k: (v.replace(tag, "*") if isinstance(v, str) else v) for k, v in resp.json.items()}
        out.append((resp.status_code, resp.headers["Content-Type"], answer))
    return out


def test_the_app_serves_deliveries_through_the_fast_path(app):
    assert isinstance(app.wsgi_app, WebhookFastPath)


def test_the_fast_path_answers_as_the_flask_view_does(app, store, settings):
    fast = answers(app, "fast", settings.max_body_bytes)
    flask_only = answers(app.wsgi_app.wsgi_app, "view", settings.max_body_bytes)  # Flask's own wsgi_app
    assert fast == flask_only
    assert [status for status, _, _ in fast] == [202, 200, 202, 401, 400, 413]
    assert fast[0][2] == {"status": "queued", "event_id": "evt_batch_batch_*_batch_completed",
                          "batch_id": "batch_*", "job": "queued"}
    assert store.counters("rejected") == {"mismatch": 2, "invalid_json": 2, "oversize": 2}
    assert store.event("evt_batch_batch_fast_batch_completed", "batch_fast")["duplicates"] == 1


def test_the_fast_path_over_real_http(app, store):
    served = Served(app)
    try:
        with httpx.Client(base_url=served.url, timeout=10) as http:  # one kept-alive connection
            for i in range(3):
                body, headers = signed(make_event(f"batch_http{i}"))
                resp = http.post("/webhooks/aistats", content=body, headers=headers)
                assert resp.status_code == 202 and resp.json()["status"] == "queued"
                assert resp.headers["content-type"] == "application/json"
                assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["x-request-id"])
            given = http.post("/webhooks/aistats", content=body, headers={**headers, "X-Request-ID": "req-7"})
            assert given.status_code == 200 and given.headers["x-request-id"] == "req-7"
            # Everything but POST on the exact path is Flask's: 405 with Allow, 404 beside it.
            wrong_method = http.get("/webhooks/aistats")
            assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"
            assert "POST" in wrong_method.headers["allow"]
            assert http.post("/webhooks/aistats/x", content=body, headers=headers).status_code == 404
            assert http.get("/healthz").json() == {"status": "ok"}
    finally:
        served.stop()
    assert store.queue.count == 3


def test_a_crash_answers_500_json_and_is_logged(app, store, monkeypatch, caplog):
    def crash(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(store, "ingest", crash)  # no real input makes the store crash
    body, headers = signed(make_event("batch_crash"))
    resp = app.test_client().post("/webhooks/aistats", data=body, headers=headers)
    assert resp.status_code == 500
    assert resp.json == {"error": "internal_error", "reason": "an unexpected error occurred"}
    assert "unhandled error" in caplog.text


def test_pack_command_writes_what_redis_py_writes():
    items = ("EVALSHA", "abc", 3, "k:é", b"\x00\xffraw", -7, 1781712000000, "", b"")
    assert pack_command(items) == b"".join(PythonRespSerializer(6000, lambda v: v if isinstance(v, bytes) else
                                                                 str(v).encode()).pack(*items))
    with pytest.raises(TypeError):
        pack_command(("SET", "k", True))


@pytest.fixture
def private_redis():
    """A Redis of this test's own: no script loaded yet, and its clients ours to kill."""
    server = RedisServer(appendonly=False, prefix="aistats-test-fastpath-").start()
    try:
        yield server
    finally:
        server.stop()


def test_ingest_loads_its_script_and_survives_a_killed_connection(settings, private_redis):
    client = private_redis.client()
    app = create_app(settings.replace(redis_url=private_redis.url), redis=private_redis.client())
    web = app.test_client()
    assert client.script_exists(Store(client, settings)._ingest._ingest._script.sha) == [False]
    body, headers = signed(make_event("batch_p1"))
    assert web.post("/webhooks/aistats", data=body, headers=headers).json["status"] == "queued"  # NOSCRIPT, loaded
    # The receiver's kept connection dies (a restart, an idle timeout): the next delivery reconnects.
    killed = client.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    body, headers = signed(make_event("batch_p2"))
    assert web.post("/webhooks/aistats", data=body, headers=headers).json["status"] == "queued"
    # And a script flushed away meanwhile is loaded again.
    client.script_flush()
    body, headers = signed(make_event("batch_p3"))
    assert web.post("/webhooks/aistats", data=body, headers=headers).json["status"] == "queued"
    store = Store(client, settings)
    assert store.queue.count == 3
    assert all(store.event(f"evt_batch_batch_p{i}_batch_completed", f"batch_p{i}") for i in (1, 2, 3))
