"""keys.py names every key the store writes, including those COMMIT derives inside Lua."""

from __future__ import annotations

import pytest

from aistats_hooks.keys import Keys
from aistats_hooks.rules.billing import billing_day
from aistats_hooks.rules.merge import merge
from aistats_hooks.store import Store
from tests.helpers import make_event, signed


def test_every_key_written_is_one_keys_names(client, store: Store, redis_client, settings):
    body, headers = signed(make_event("batch_k", "batch.progress", key="batch.progress:10", status="in_progress"))
    assert client.post("/webhooks/aistats", data=body, headers=headers).status_code == 202
    record = merge(None, make_event("batch_k", session_id="sess_1")["data"])
    store.save(record)
    store.incr("sweep", "queued")
    day = billing_day(record)
    keys = store.keys
    named = {
        keys.events("batch_k"), keys.outcomes("batch_k"), keys.record("batch_k"), keys.pending("batch_k"), keys.due,
        # (and keys.open, which the final record left empty, so Redis dropped it)
        keys.index_all, keys.index("status", "completed"), keys.index("session_id", "sess_1"),
        keys.index("model", record["model"]), keys.ledger_contributions, keys.ledger_total, keys.ledger("day"),
        *(keys.ledger(group) for group in ("session_id", "model", "provider")),
        *(keys.ledger(group, day) for group in ("session_id", "model", "provider")),
        keys.counters("deliveries"), keys.counters("sweep"),
        keys.changes,  # the saved record announced batch.created, .completed and .billing_settled
    }
    written = {k.decode() for k in redis_client.scan_iter(match=f"{settings.key_prefix}:*", count=1000)}
    assert written == named


def test_a_ledger_group_that_does_not_exist_is_refused():
    with pytest.raises(ValueError, match="colour"):
        Keys("p").ledger("colour")
