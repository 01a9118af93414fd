"""The RQ job that POSTs one forwarded message to its destination, signed by the Standard Webhooks spec.

Enqueued by ``aistats_hooks.forwarding.dispatch``. A 2xx is success; any other
answer, a timeout or a connection error raises, and RQ retries on
``forwarding.BACKOFF`` (more than a day); 410 Gone disables the destination
and is not retried. Redirects are not followed (a receiver that moved must be
reconfigured, not guessed). Each attempt is recorded on the message.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone

import httpx
from rq import get_current_job
from standardwebhooks import Webhook

from aistats_hooks import forwarding
from aistats_hooks.timestamps import iso

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


def deliver(mid: str, force: bool = False) -> str:
    """Send message ``mid`` once (RQ retries it); return what happened."""
    ctx = context.current()
    redis, keys, settings = ctx.store.redis, ctx.store.keys, ctx.settings
    message = forwarding.load(redis, keys, mid)
    if message is None:
        return "expired"
    if message["status"] == "delivered" and not force:
        return "already_delivered"
    if message["url"] in forwarding.disabled(redis, keys):
        forwarding.record_attempt(redis, keys, mid, {"at": iso(time.time()), "error": "destination disabled"},
                                  "disabled")
        ctx.store.incr("forward", "disabled")
        return "disabled"  # success for RQ: later messages are marked too; `redeliver` once re-enabled
    if not settings.forward_secret:
        raise RuntimeError("AISTATS_FORWARD_SECRET is not set in this worker")
    body = body_of(message, ctx.store.get(message["batch_id"]))
    headers = signed_headers(settings.forward_secret, mid, body)
    started = time.monotonic()
    attempt: dict = {"at": iso(time.time())}
    try:
        with httpx.Client(timeout=forwarding.TIMEOUT, follow_redirects=False) as client:
            response = client.post(message["url"], content=body.encode(), headers=headers)
        attempt["status_code"] = response.status_code
    except httpx.HTTPError as exc:
        attempt["error"] = type(exc).__name__
    attempt["latency_ms"] = round((time.monotonic() - started) * 1000)
    code = attempt.get("status_code")
    if code is not None and 200 <= code < 300:
        forwarding.record_attempt(redis, keys, mid, attempt, "delivered")
        ctx.store.incr("forward", "delivered")
        return "delivered"
    if code == 410:
        forwarding.disable(redis, keys, message["url"], f"410 Gone at {attempt['at']}")
        forwarding.record_attempt(redis, keys, mid, attempt, "disabled")
        ctx.store.incr("forward", "disabled")
        log.warning("destination answered 410 Gone: forwarding to it is disabled (`forwarding enable URL`)")
        return "disabled"
    job = get_current_job()
    last = job is None or not job.retries_left
    forwarding.record_attempt(redis, keys, mid, attempt, "failed" if last else "retrying")
    ctx.store.incr("forward", "failed" if last else "retried")
    raise DeliveryFailed(f"{mid}: {code or attempt.get('error')}")
