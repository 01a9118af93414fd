"""After a failover that lost a reconcile's commit and its job, the batch is reconciled again."""

from __future__ import annotations

from rq import Queue

from aistats_hooks import converge
from aistats_hooks.web import create_app
from tests.helpers import make_event, run_worker, signed


def test_a_new_primary_requeues_batches_whose_deliveries_were_never_settled(settings, worker_env, upstream):
    app = create_app(settings)
    store = app.extensions["aistats"]
    assert converge.check(store) == 0  # the first look only records the primary
    upstream.answer("c1", (200, make_event("c1")["data"]))
    upstream.answer("c2", (200, make_event("c2")["data"]))
    for batch_id in ("c1", "c2"):
        body, headers = signed(make_event(batch_id))
        assert app.test_client().post("/webhooks/aistats", data=body, headers=headers).status_code == 202
    run_worker(store)  # c1 and c2 reconciled and settled
    body, headers = signed(make_event("c3"))
    upstream.answer("c3", (200, make_event("c3")["data"]))
    assert app.test_client().post("/webhooks/aistats", data=body, headers=headers).status_code == 202
    # The failover lost c3's job (the delivery itself was acknowledged, so it survived).
    Queue(settings.queue_name, connection=store.redis).empty()
    store.redis.delete(store.keys.pending("c3"))
    assert converge.check(store) == 0  # same primary: nothing to do
    assert store.get("c3") is None

    store.redis.set(converge.primary_key(store.keys), "the-old-primary")
    assert converge.unsettled_batches(store.redis, store.keys) == ["c3"]
    assert converge.check(store) == 1
    run_worker(store)
    assert store.get("c3")["status"] == "completed"
    assert upstream.calls["c1"] == 1 and upstream.calls["c3"] == 1
    assert converge.unsettled_batches(store.redis, store.keys) == []
