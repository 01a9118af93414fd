"""The query API: token, lookups, pagination, filters, events and billing summaries."""

from __future__ import annotations

import pytest

from aistats_hooks.rules.merge import merge
from aistats_hooks.web import create_app
from tests.helpers import make_event


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.fixture
def store(app):
    return app.extensions["aistats"]


@pytest.fixture
def client(app, settings):
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {settings.query_api_token}"
    return client


def put(store, batch_id, *, minute=0, status="completed", session="s1", model="openai/gpt-5-mini", nanos=20250,
        day="2026-06-17", provider="openai"):
    data = make_event(batch_id)["data"]
    data.update(status=status, session_id=session, model=model, provider=provider,
                created_at=f"{day}T10:{minute // 60:02d}:{minute % 60:02d}.000Z", updated_at=f"{day}T12:00:00.000Z")
    data["billing"] = dict(data["billing"], total_nanos=nanos, billed_at=f"{day}T12:00:00.000Z",
                           state="settled" if status == "completed" else "void")
    record = merge(None, data)
    store.save(record)
    return record


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc", "Bearer"])
def test_token_required(app, header):
    headers = {"Authorization": header} if header else {}
    for path in ("/batches", "/batches/x", "/batches/x/events", "/billing/summary"):
        resp = app.test_client().get(path, headers=headers)
        assert resp.status_code == 401 and resp.json["error"] == "unauthorized"


def test_query_api_disabled_without_token(settings):
    app = create_app(settings.replace(query_api_token=None))
    resp = app.test_client().get("/batches", headers={"Authorization": "Bearer "})
    assert resp.status_code == 401 and "QUERY_API_TOKEN" in resp.json["reason"]


def test_get_batch_and_404(client, store):
    put(store, "b1")
    assert client.get("/batches/b1").json["status"] == "completed"
    resp = client.get("/batches/nope")
    assert resp.status_code == 404 and resp.json["error"] == "not_found"


def test_list_is_newest_first_with_cursor_pagination(client, store):
    for i in range(7):
        put(store, f"b{i}", minute=i)
    seen, cursor = [], None
    while True:
        resp = client.get("/batches", query_string={"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200
        seen += [b["id"] for b in resp.json["data"]]
        cursor = resp.json["next_cursor"]
        if not cursor:
            break
    assert seen == [f"b{i}" for i in range(6, -1, -1)]


def test_list_filters(client, store):
    put(store, "a", minute=1, session="s1", model="m1")
    put(store, "b", minute=2, session="s2", model="m1", status="failed")
    put(store, "c", minute=3, session="s1", model="m2")
    ids = lambda **q: [b["id"] for b in client.get("/batches", query_string=q).json["data"]]  # noqa: E731
    assert ids(session_id="s1") == ["c", "a"]
    assert ids(model="m1") == ["b", "a"]
    assert ids(status="failed") == ["b"]
    assert ids(session_id="s1", model="m1") == ["a"]
    assert ids(status="completed", limit=1) == ["c"]


@pytest.mark.parametrize("query,reason", [
    ({"limit": "501"}, "limit"), ({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"),
    ({"status": "done"}, "status"), ({"cursor": "%%%"}, "cursor"), ({"colour": "red"}, "unknown"),
])
def test_list_bad_parameters(client, query, reason):
    resp = client.get("/batches", query_string=query)
    assert resp.status_code == 400 and reason in resp.json["reason"]


def test_events_endpoint(client, store, app):
    from tests.helpers import signed

    body, headers = signed(make_event("ev1"))
    app.test_client().post("/webhooks/aistats", data=body, headers=headers)
    resp = client.get("/batches/ev1/events")
    (event,) = resp.json["data"]
    assert event["id"] == "evt_batch_ev1_batch_completed" and event["type"] == "batch.completed"
    assert event["attempt"] == 1 and event["outcome"] == "queued" and "received_at" in event
    assert client.get("/batches/none/events").status_code == 404


def test_billing_summary_groups_and_ranges(client, store):
    put(store, "a", session="s1", model="m1", nanos=100, day="2026-06-17")
    put(store, "b", session="s2", model="m1", nanos=250, day="2026-06-18", provider="anthropic")
    put(store, "c", session="s1", model="m2", nanos=999, day="2026-06-18", status="failed")  # void: 0
    by_day = client.get("/billing/summary?group_by=day").json
    assert by_day["total_nanos"] == 350 and by_day["total_usd"] == "0.000000350"
    assert [(g["key"], g["total_nanos"]) for g in by_day["groups"]] == [("2026-06-17", 100), ("2026-06-18", 250)]
    by_model = client.get("/billing/summary?group_by=model").json
    assert by_model["groups"] == [{"key": "m1", "total_nanos": 350, "total_usd": "0.000000350"}]
    ranged = client.get("/billing/summary?group_by=session_id&since=2026-06-18&until=2026-06-18").json
    assert [(g["key"], g["total_nanos"]) for g in ranged["groups"]] == [("s2", 250)]
    provider = client.get("/billing/summary?group_by=provider&until=2026-06-17").json
    assert [(g["key"], g["total_nanos"]) for g in provider["groups"]] == [("openai", 100)]


@pytest.mark.parametrize("query", ["group_by=colour", "since=yesterday", "since=2026-06-19&until=2026-06-18", "colour=red"])
def test_billing_summary_bad_parameters(client, query):
    resp = client.get(f"/billing/summary?{query}")
    assert resp.status_code == 400 and resp.json["error"] == "bad_request"


def test_internal_bookkeeping_stays_out_of_the_api(client, store):
    """`announced` (what transitions were last computed from) is the store's, not the API's (issue 28, item 10)."""
    put(store, "b-internal")
    assert "announced" in store.get("b-internal")  # the store keeps it
    one = client.get("/batches/b-internal").json
    assert one["id"] == "b-internal" and "announced" not in one
    listed = [b for b in client.get("/batches").json["data"] if b["id"] == "b-internal"]
    assert listed and "announced" not in listed[0]
