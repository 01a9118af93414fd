"""Bounded bookkeeping: every key a batch's lifecycle writes expires, or is a documented permanent key.

A whole lifecycle through the real receiver, RQ workers (reconciles and
handler runs) and a gateway over real HTTP; then every key under the
test's prefix, and RQ's keys of its jobs, are read with their TTLs.
"""

from __future__ import annotations

import copy
import fnmatch

import pytest

from aistats_hooks import keys as keys_module

from aistats_hooks.effects import dispatch
from bench.counting_handlers import attempts_key, runs_key
from tests.helpers import make_event, run_worker, signed
from workers import context

COUNTING = "bench.counting_handlers"


@pytest.fixture
def app(settings, worker_env, monkeypatch):
    monkeypatch.setenv("AISTATS_HANDLERS", COUNTING)
    monkeypatch.setattr(dispatch, "BACKOFF", [0])
    context.current.cache_clear()
    from aistats_hooks.web import create_app

    yield create_app(settings)
    context.current.cache_clear()


def snapshot(batch_id, status, done, settled=None):
    data = copy.deepcopy(make_event(batch_id)["data"])
    data.update(status=status, request_counts={"total": 2, "completed": done, "failed": 0},
                updated_at=f"2026-06-17T16:0{done}:00.000Z")
    data["billing"] = ({"state": "settled", "total_nanos": settled} if settled
                       else {"state": "pending", "total_nanos": None})
    return data


def test_every_key_of_a_batch_lifecycle_expires_or_is_documented_permanent(app, settings, upstream):
    store = app.extensions["aistats"]
    client = app.test_client()
    # The progress delivery starts a provisional record; the completed one costs the lifecycle's one retrieve.
    upstream.answer("b_life", (200, snapshot("b_life", "completed", 2, settled=12345)))
    for event in (make_event("b_life", "batch.progress", key="batch.progress:50", status="in_progress"),
                  make_event("b_life")):
        body, headers = signed(event)
        assert client.post("/webhooks/aistats", data=body, headers=headers).status_code == 202
        body, headers = signed(event, attempt=2)  # a retry: a duplicate
        assert client.post("/webhooks/aistats", data=body, headers=headers).status_code == 200
        run_worker(store)
    run_worker(store)  # the handler jobs dispatched by the last reconcile
    assert store.get("b_life")["status"] == "completed" and upstream.calls["b_life"] == 1
    prefix = settings.key_prefix
    test_handler_keys = {runs_key(prefix), attempts_key(prefix)}  # the counting handler's own, not the service's
    assert store.redis.hlen(runs_key(prefix)) >= 3  # handlers ran: their bookkeeping is in the scan below
    permanent = [f"{prefix}:{shape}" for shape in keys_module.PERMANENT]
    unbounded = []
    for raw in store.redis.scan_iter(f"{prefix}:*", count=1000):
        key = raw.decode()
        if key in test_handler_keys or any(fnmatch.fnmatchcase(key, shape) for shape in permanent):
            continue
        if store.redis.ttl(key) < 0:
            unbounded.append(key)
    assert unbounded == [], " ".join(sorted(k.split(":", 1)[1] for k in unbounded))
    # Every per-event and per-transition key expires with the event retention (or sooner).
    for shape in ("ev:b_life", "eo:b_life", "hlast:b_life", "hdone:*"):
        found = list(store.redis.scan_iter(f"{prefix}:{shape}"))
        assert found, shape
        assert all(0 < store.redis.ttl(k) <= settings.event_retention for k in found), shape
    # RQ's job hashes of this test: gone (results are not kept) or expiring.
    job_prefix = prefix.replace(":", "_")
    jobs = [k for k in store.redis.scan_iter(f"rq:job:{job_prefix}-*")]
    assert all(store.redis.ttl(k) > 0 for k in jobs), jobs


def test_the_permanent_shapes_are_named_in_keys_docs():
    doc = keys_module.__doc__
    for shape in keys_module.PERMANENT:
        assert "{p}:" + shape.split("*")[0] in doc, shape
