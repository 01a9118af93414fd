"""Hostile traffic that holds the secret: correctly signed, still hostile.

The run knows the endpoint's secret, so these are what a leaked secret (or a
buggy sender) could do. Each must leave every figure at zero and every batch
equal to its truth:

- ``colliding_ids``: events of a real batch whose ids look like bookkeeping
  (``x`` and ``x#d``, ``#bytes``, ``=x``, ``~batch_completed``), each sent
  twice: stored as distinct events, the second answered ``duplicate``, and
  the batch's events page still answers (``lost_events`` checks it).
- ``batch_flood``: more events than AISTATS_MAX_BATCH_EVENTS to one made-up
  batch: those beyond are answered 202 ``batch_event_limit``, never stored
  (``verify`` counts batches over the bound).
- ``poison_value``: deep nesting, NaN, Infinity, 1e400: refused with 400 (a
  2xx counts as forged_accepted).
- ``poison_fallback``: a huge amount or a 1e20 timestamp to a real batch,
  then the fallback applied as a last attempt would: recorded as an error,
  lock released, the next retrieve restores the truth.
- ``forged_terminal``: a terminal with false billing to a real batch whose
  retrieve is failing (``retrieve_500``), then the fallback: provisional
  until the next retrieve overrules it, ledger included.
"""

from __future__ import annotations

import json
import os
import time

from aistats_hooks.reconcile import apply_fallback

COLLIDING_IDS = ("x", "x#d", "#bytes", "#d=x", "=x", "~x", "~batch_completed")
POISON_BODIES = (b'{"a":' * 700 + b"1" + b"}" * 700, b"[" * 60 + b"]" * 60, b"NaN", b"Infinity", b"-Infinity",
                 b"1e400")


def event_for(batch_id: str, key: str = "batch.completed", **data) -> dict:
    """A delivery body for ``batch_id`` with a fresh event id; ``data`` overrides the batch object."""
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in key)
    batch = {"id": batch_id, "object": "batch", "status": "completed",
             "billing": {"state": "settled", "total_nanos": 10**15, "currency": "usd"},
             "request_counts": {"total": 1, "completed": 1, "failed": 0}} | data
    return {"id": f"evt_batch_{batch_id}_{safe}_{os.urandom(3).hex()}", "type": key.split(":")[0],
            "created_at": int(time.time()), "delivery": {"key": key, "attempt": 1, "max_attempts": 4}, "data": batch}


class SignedAttacks:
    """The attacks above, sent through a ``Hostile`` (its client, record, secret and batches)."""

    def __init__(self, hostile, max_batch_events: int) -> None:
        self.h = hostile
        self.max_batch_events = max_batch_events
        self.exact_sent = False

    def _real_batch(self, fault: str | None = None) -> str | None:
        batches = list(self.h.creator.batches.values())
        preferred = [b for b in batches if fault in b.faults] if fault else []
        pool = preferred or batches
        return self.h.rng.choice(pool).id if pool else None

    def colliding_ids(self) -> None:
        batch_id = self._real_batch()
        if batch_id is None:
            return
        # The exact ids once, all to one batch (the run's dedupe check counts ids across batches);
        # afterwards the same shapes around a stem unique to the batch.
        if not self.exact_sent:
            self.exact_sent, ids = True, COLLIDING_IDS
        else:
            stem = "x" + os.urandom(3).hex()
            ids = (stem, stem + "#d", "#d=" + stem, "=" + stem, "~" + stem)
        for event_id in ids:
            event = event_for(batch_id, "batch.progress", status="in_progress", billing=None)
            event["id"] = event_id
            for _ in range(2):  # the second must be a duplicate
                self.h._send("colliding_ids", *self.h._signed(event), hostile=False, event_id=event_id,
                             batch_id=batch_id)

    def batch_flood(self) -> None:
        batch_id = "chaos_flood_" + os.urandom(6).hex()
        self.h.record.flooded.append(batch_id)
        for i in range(self.max_batch_events + 5):
            event = event_for(batch_id, f"batch.progress:{i}", status="in_progress", billing=None)
            self.h._send("batch_flood", *self.h._signed(event), hostile=False)

    def poison_value(self) -> None:
        batch_id = self._real_batch() or "batch_poison"
        event = event_for(batch_id)
        raw = json.dumps(event, separators=(",", ":")).encode()
        poison = self.h.rng.choice(POISON_BODIES)
        raw = raw.replace(b'"object":"batch"', b'"object":"batch","poison":' + poison, 1)
        self.h._send("poison_value", raw, self.h._headers(raw, event))

    def poison_fallback(self) -> None:
        batch_id = self._real_batch()
        if batch_id is None:
            return
        variant = self.h.rng.randrange(2)
        extra = ({"billing": {"state": "settled", "total_nanos": "99999999999999999999", "currency": "usd"}}
                 if variant == 0 else {"updated_at": 1e20, "completed_at": 1e20})
        event = event_for(batch_id, "batch.completed", **extra)
        self.h._send("poison_fallback", *self.h._signed(event), hostile=False, event_id=event["id"],
                     batch_id=batch_id)
        self.h.record.fault("fallback_" + apply_fallback(self.h.creator._store, batch_id).value)

    def forged_terminal(self) -> None:
        batch_id = self._real_batch("retrieve_500")
        if batch_id is None:
            return
        kind, billing = self.h.rng.choice([
            ("batch.cancelled", {"state": "void", "total_nanos": None, "currency": "usd"}),
            ("batch.completed", {"state": "settled", "total_nanos": 10**15, "currency": "usd"}),
        ])
        event = event_for(batch_id, kind, status=kind.split(".")[1], billing=billing)
        self.h._send("forged_terminal", *self.h._signed(event), hostile=False, event_id=event["id"],
                     batch_id=batch_id)
        # As the last failed attempt of its reconcile would (retrieve keeps failing).
        self.h.record.fault("fallback_" + apply_fallback(self.h.creator._store, batch_id).value)
