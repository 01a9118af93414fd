"""The RQ job that POSTs one forwarded message to its destination, signed by the Standard Webhooks spec.

``dispatch_messages`` fans new feed entries out into messages, on the forward
queue's worker (a reconcile only asks for it). ``deliver`` sends one: enqueued
by ``aistats_hooks.effects.forwarding.dispatch`` on the forward queue. A 2xx
is success; any other answer, a timeout or a connection error raises, and RQ
retries on ``forwarding.BACKOFF`` (more than a day); 410 Gone disables the
destination and is not retried. Redirects are not followed (a receiver that
moved must be reconfigured, not guessed). An attempt costs at most
``forwarding.TIMEOUT`` seconds in all and reads at most
``forwarding.MAX_ANSWER_BYTES`` of the answer (``bounded_post.py``).

Each attempt is recorded on the message before it is made, as interrupted,
then replaced by its outcome: an attempt cut short by the job's timeout or a
killed worker stays visible. A message whose destination is no longer in
AISTATS_FORWARD_URLS is dropped, and one whose destination was disabled
(410 Gone, or ``forwarding disable URL``) is marked disabled, both without a
request and without a retry. After an attempt times out, the destination's
other messages skip their attempts for ``forwarding.PAUSE_AFTER_TIMEOUT``
seconds (recorded, and retried on the usual schedule): a hanging destination
costs one attempt per pause, not one per message.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone

from rq import get_current_job
from standardwebhooks import Webhook

from aistats_hooks import tracing

from aistats_hooks.effects import bounded_post, forwarding
from aistats_hooks.urls import masked
from aistats_hooks.rules.timestamps import iso

from . import context

log = logging.getLogger("workers.forward")
USER_AGENT = "aistats-hooks-forwarder/1"


class DeliveryFailed(Exception):
    """The destination did not take the message (non-2xx, timeout, connection error): retried by RQ."""


def body_of(message: dict, record: dict | None) -> str:
    """The message body: the transition, when it happened, and the batch's reconciled record."""
    data = record or {"id": message["batch_id"]}
    return json.dumps({"type": message["transition"], "timestamp": message["at"], "data": data},
                      separators=(",", ":"), default=str)


def signed_headers(secret: str, mid: str, body: str, now: datetime | None = None) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (a fresh timestamp, the same id)."""
    now = now or datetime.now(timezone.utc)
    return {
        "webhook-id": mid, "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(mid, now, body),
        "content-type": "application/json", "user-agent": USER_AGENT,
    }


@tracing.traced_job("forward dispatch")
def dispatch_messages() -> int:
    """Turn new feed entries into messages and their jobs (asked for by ``forwarding.request_dispatch``)."""
    ctx = context.current()
    redis, keys = ctx.store.redis, ctx.store.keys
    redis.delete(keys.forward("wake"))  # an entry appended from now on asks for the next dispatch
    return forwarding.dispatch(redis, keys, ctx.store.queue, ctx.settings)


@tracing.traced_job("forward")
def deliver(mid: str, force: bool = False) -> str:
    """Send message ``mid`` once (RQ retries it); return what happened."""
    ctx = context.current()
    redis, keys, settings = ctx.store.redis, ctx.store.keys, ctx.settings
    message = forwarding.load(redis, keys, mid)
    if message is None:
        return "expired"
    if message["status"] == "delivered" and not force:
        return "already_delivered"
    if message["url"] not in settings.forward_urls:
        forwarding.record_attempt(redis, keys, mid, {"at": iso(time.time()), "error": forwarding.DROPPED}, "dropped")
        ctx.store.incr("forward", "dropped")
        return "dropped"  # success for RQ: not retried, and the batch's later messages are dropped in turn
    if message["url"] in forwarding.disabled(redis, keys):
        forwarding.record_attempt(redis, keys, mid, {"at": iso(time.time()), "error": "destination disabled"},
                                  "disabled")
        ctx.store.incr("forward", "disabled")
        return "disabled"  # success for RQ: later messages are marked too; `redeliver` once re-enabled
    if not settings.forward_secret:
        raise RuntimeError("AISTATS_FORWARD_SECRET is not set in this worker")
    job = get_current_job()
    last = job is None or not job.retries_left
    if forwarding.paused(redis, keys, message["url"]) and not force:
        # Another message to it timed out lately: no request now, the retry comes back to it.
        forwarding.record_attempt(redis, keys, mid, {"at": iso(time.time()), "error": forwarding.PAUSED},
                                  "failed" if last else "retrying")
        ctx.store.incr("forward", "paused")
        raise DeliveryFailed(f"{mid}: {forwarding.PAUSED}")
    body = body_of(message, ctx.store.get(message["batch_id"]))
    headers = signed_headers(settings.forward_secret, mid, body)
    parent = tracing.current_traceparent()
    if parent:  # the receiver can join this delivery to the trace that caused it
        headers["traceparent"] = parent
    attempt: dict = {"at": iso(time.time())}
    # Recorded first: if the job's timeout or a kill ends this attempt, it stays listed as interrupted.
    forwarding.record_attempt(redis, keys, mid, {**attempt, "error": forwarding.INTERRUPTED}, message["status"])
    started = time.monotonic()
    answer = bounded_post.post(message["url"], body.encode(), headers, deadline_s=forwarding.TIMEOUT,
                               max_bytes=forwarding.MAX_ANSWER_BYTES)
    attempt["latency_ms"] = round((time.monotonic() - started) * 1000)
    if answer.status_code is not None:
        attempt["status_code"] = answer.status_code
    else:
        attempt["error"] = answer.error
    code = answer.status_code
    if code is not None and 200 <= code < 300:
        forwarding.record_attempt(redis, keys, mid, attempt, "delivered", replace_last=True)
        ctx.store.incr("forward", "delivered")
        return "delivered"
    if code == 410:
        forwarding.disable(redis, keys, message["url"], f"410 Gone at {attempt['at']}")
        forwarding.record_attempt(redis, keys, mid, attempt, "disabled", replace_last=True)
        ctx.store.incr("forward", "disabled")
        log.warning("%s answered 410 Gone: forwarding to it is disabled (`forwarding enable URL`)",
                    masked(message["url"]))
        return "disabled"
    forwarding.record_attempt(redis, keys, mid, attempt, "failed" if last else "retrying", replace_last=True)
    ctx.store.incr("forward", "failed" if last else "retried")
    if answer.error == bounded_post.TIMEOUT_ERROR:
        forwarding.pause(redis, keys, message["url"])
        ctx.store.incr("forward", "timed_out")
    raise DeliveryFailed(f"{mid}: {code or attempt.get('error')}")
