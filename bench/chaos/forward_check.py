"""Chaos: every forwarded transition reached a real receiver, verified, in order per batch, once per webhook-id.

The workers forward batch.created, the terminal transitions and
batch.billing_settled (AISTATS_FORWARD_EVENTS) to a loopback ``bench.forward_destination.Destination`` that
verifies each message with ``standardwebhooks`` and is down (503) for two
stretches of the run, and to two destinations beside it that never answer
properly: one hangs, one drips a byte a second (bench/hostile_destinations.py).
They must not hold the good one back, nor the reconciles. Once the batches
have converged and the good destination's jobs drained (the bad ones' retry
for a day): ``forward_missing`` counts feed entries never delivered,
``forward_unverified`` requests whose signature did not verify, and
``forward_out_of_order`` batches whose delivered transitions (first 2xx per
webhook-id) are not in feed order.
"""

from __future__ import annotations

import threading
import time

from rq import Queue
from rq.registry import DeferredJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from aistats_hooks.forward_settings import DEFAULT_EVENTS, generate_secret
from aistats_hooks import job_queues
from aistats_hooks.effects import forwarding
from aistats_hooks.effects.forwarding import GROUP
from aistats_hooks.rules.transitions import Transition
from aistats_hooks.keys import Keys
from bench.forward_destination import Destination
from bench.hostile_destinations import Hostile

# Created, the terminal ones and billing_settled: order is checked, progress noise is not sent (POSTs cost worker time).
EVENTS = ",".join([Transition.CREATED.value, *DEFAULT_EVENTS])
DOWN_SECONDS = 4.0  # under the first retry's 5 s: a message refused while down goes through on its retry


class Forwarding:
    """The receiver, the stack's settings for it, and the final check."""

    def __init__(self, stack) -> None:
        self.stack = stack
        self.secret = generate_secret()
        self.destination = Destination(self.secret)
        self.hostile = [Hostile("hang"), Hostile("drip")]
        urls = [self.destination.url] + [h.url for h in self.hostile]
        stack.forward_env = {"AISTATS_FORWARD_URLS": ",".join(urls), "AISTATS_FORWARD_SECRET": self.secret,
                             "AISTATS_FORWARD_EVENTS": EVENTS}
        self.downtimes = 0

    def schedule_outages(self, window: float, record) -> None:
        """Take the receiver down twice during the run (at 30 % and 60 % of the window)."""
        def run() -> None:
            began = time.monotonic()
            for at in (0.3, 0.6):
                time.sleep(max(0.0, began + window * at - time.monotonic()))
                self.destination.down = True
                record.note(f"forward destination down for {DOWN_SECONDS:g}s")
                time.sleep(DOWN_SECONDS)
                self.destination.down = False
                self.downtimes += 1

        threading.Thread(target=run, name="chaos-forward-outage", daemon=True).start()

    def _left(self) -> int:
        redis = self.stack.redis()
        queue = job_queues.of(Queue(self.stack.prefix, connection=redis), "forward")
        ids = list(queue.get_job_ids())
        for registry in (DeferredJobRegistry, ScheduledJobRegistry, StartedJobRegistry):
            ids += registry(queue=queue).get_job_ids()
        # Dequeued by a worker killed before it started them: RQ's maintenance retries them (IntermediateQueue.cleanup).
        ids += queue.intermediate_queue.get_job_ids()
        # Dependents made ready whose enqueue did not happen (a crash, a lost race): RQ's maintenance enqueues them.
        ids += queue.ready_job_registry.get_job_ids()
        # The good destination's messages only: the hanging and dripping ones' are retried for a day.
        keys = Keys(self.stack.prefix)
        ids = [i for i in ids if i.startswith("msg_") and (forwarding.load(redis, keys, i) or {}).get("url")
               == self.destination.url]
        stream = f"{self.stack.prefix}:changes"
        groups = {_text(g["name"]): g for g in redis.xinfo_groups(stream)} if redis.exists(stream) else {}
        group = groups.get(GROUP)
        undispatched = redis.xlen(stream) if group is None else (
            len(redis.xrange(stream, f"({_text(group['last-delivered-id'])}", "+")) + int(group["pending"]))
        return len(ids) + undispatched

    def check(self, *, timeout: float = 300.0, on_wait=None) -> dict:
        """Wait for forwarding to drain (up to ``timeout``), then compare the feed with what was delivered."""
        deadline = time.monotonic() + timeout
        left = self._left()
        while left and time.monotonic() < deadline:
            if on_wait:
                on_wait(left)
            time.sleep(2)
            left = self._left()
        entries = self.stack.redis().xrange(f"{self.stack.prefix}:changes", "-", "+")
        expected: dict[str, list[str]] = {}
        for _id, fields in entries:
            if _text(fields[b"transition"]) in EVENTS.split(","):
                expected.setdefault(_text(fields[b"batch_id"]), []).append(_text(fields[b"transition"]))
        delivered = self.destination.delivered()
        got: dict[str, list[str]] = {}
        for r in delivered:
            if r["verified"]:
                got.setdefault(r["batch_id"], []).append(r["type"])
        missing = sum(max(0, len(v) - len(got.get(b, []))) for b, v in expected.items())
        # Sent strictly in order per batch: what arrived must be the start of the batch's feed.
        out_of_order = sorted(b for b, v in got.items() if v != expected.get(b, [])[:len(v)])
        requests = self.destination.requests
        hostile_urls = {h.url for h in self.hostile}
        attempts = [a for m in forwarding.messages(self.stack.redis(), Keys(self.stack.prefix), limit=1_000_000)
                    if m["url"] in hostile_urls for a in m["attempts"]]
        return {
            "forward_missing": missing,
            "forward_unverified": sum(not r["verified"] for r in requests),
            "forward_out_of_order": len(out_of_order),
            "forward_out_of_order_ids": out_of_order[:20],
            "forward_requests": len(requests),
            "forward_refused_while_down": sum(r["answered"] == 503 for r in requests),
            "forward_delivered": len(delivered),
            "forward_jobs_left": left,
            "forward_hostile_requests": sum(h.requests for h in self.hostile),
            "forward_hostile_timeouts": sum(a.get("error") == "timeout" for a in attempts),
            "forward_hostile_paused": sum(a.get("error") == forwarding.PAUSED for a in attempts),
        }

    def stop(self) -> None:
        """Stop the receivers."""
        self.destination.stop()
        for h in self.hostile:
            h.stop()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
