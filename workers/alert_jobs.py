"""The alert tick (every 30 s from the cron): look at what failed for good, send folded alerts and resolves.

One process at a time (a lock). Each condition of ``aistats_hooks.effects.alerts`` is
read from what the service already keeps: RQ's failed-job registries (dead
letters), the disabled forwarding destinations, the last successful run of
discovery and the sweep, the change feed (batches that settled above the
threshold, through a consumer group of its own), and the ledger's day totals.
A message that could not be delivered is due again at the next tick.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from datetime import datetime, timezone

import httpx
from redis.exceptions import ResponseError
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry
from standardwebhooks import Webhook

from aistats_hooks import job_queues

from aistats_hooks.effects import alerts, forwarding
from aistats_hooks.store.process_lock import hold
from aistats_hooks.urls import masked

from . import context

log = logging.getLogger("workers.alerts")
GROUP = "alerts"
SEND_TIMEOUT = httpx.Timeout(5.0, connect=3.0)
USER_AGENT = "aistats-hooks-alerts/1"


def service_queues(settings) -> list[str]:
    """Every queue the service's jobs run on (reconciles first)."""
    return job_queues.names(settings.queue_name)


def tick() -> int:
    """Observe every condition and send what is due; return how many messages were delivered."""
    ctx = context.current()
    settings = ctx.settings
    if not settings.alert_urls:
        return 0
    redis, keys = ctx.store.redis, ctx.store.keys
    with hold(redis, f"{keys.prefix}:alerts:lock", 60_000) as held:
        if not held:
            return 0
        now = time.time()
        due = [m for m in _conditions(ctx, now) if m is not None]
        delivered = 0
        for message in due:
            if _send(settings, message):
                alerts.sent(redis, keys, message, now=now)
                delivered += 1
        return delivered


def _conditions(ctx, now: float):
    redis, keys, settings = ctx.store.redis, ctx.store.keys, ctx.settings
    seen: set[tuple[str, str]] = set()

    def observe(kind, subject, summary, *, count=1, details=None):
        seen.add((kind, subject))
        return alerts.observe(redis, keys, kind, subject, True, summary, count=count, details=details, now=now)

    for name in service_queues(settings):
        queue = Queue(name, connection=redis)
        ids = FailedJobRegistry(queue=queue).get_job_ids()
        jobs = [j for j in Job.fetch_many(ids, connection=redis) if j is not None] if ids else []
        for func, n in Counter(j.func_name for j in jobs).items():
            yield observe("dead_letter", f"{name}:{func}", f"{n} {func} job(s) failed every try on queue {name}; "
                          "see Failed work, fix the cause, then requeue", count=n, details={"queue": name,
                                                                                            "function": func})
    for url, why in forwarding.disabled(redis, keys).items():
        yield observe("forwarding_disabled", masked(url), f"forwarding to {masked(url)} is disabled: {why}")
    marks = alerts.last_ok(redis, keys)
    for what in ("discovery", "sweep"):
        ok, tried = marks.get(f"{what}:ok"), marks.get(f"{what}:try")
        if ok is not None and tried is not None and tried - ok >= alerts.STALLED_AFTER and now - tried < 300:
            yield observe(f"{what}_stalled", what, f"{what} has not succeeded for {int((tried - ok) // 60)} minutes")
    if settings.alert_batch_nanos is not None:
        yield from (observe("batch_cost", bid, f"batch {bid} settled at ${nanos / 1e9:,.2f}",
                            details={"batch_id": bid, "total_nanos": nanos})
                    for bid, nanos in _settled_above(ctx, settings.alert_batch_nanos))
    if settings.alert_daily_nanos is not None:
        day = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%d")
        raw = redis.hget(keys.ledger("day"), day)
        spent = int(raw or 0)
        if spent > settings.alert_daily_nanos:
            yield observe("daily_spend", day, f"spend on {day} (UTC) is ${spent / 1e9:,.2f}, above "
                          f"${settings.alert_daily_nanos / 1e9:,.2f}", details={"day": day, "total_nanos": spent})
    # What was open and is no longer seen has recovered.
    for state in alerts.open_alerts(redis, keys):
        if (state.kind, state.subject) in seen:
            continue
        if state.kind in alerts.ONE_SHOT:  # seen once on the feed and not delivered yet: due again
            yield alerts.observe(redis, keys, state.kind, state.subject, True, state.summary, count=state.count,
                                 details=state.details, now=now)
        else:
            yield alerts.observe(redis, keys, state.kind, state.subject, False, now=now)


def _settled_above(ctx, threshold: int):
    """Batches whose settled bill passed ``threshold``, from the change feed since the last tick."""
    redis, keys = ctx.store.redis, ctx.store.keys
    try:
        redis.xgroup_create(keys.changes, GROUP, id="$", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    for start in ("0", ">"):
        reply = redis.xreadgroup(GROUP, "ticker", {keys.changes: start}, count=1000) or []
        for _stream, entries in reply:
            for entry_id, fields in entries:
                text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                        for k, v in fields.items()}
                if text.get("transition") in ("batch.billing_settled", "batch.completed") and text.get("batch_id"):
                    record = ctx.store.get(text["batch_id"]) or {}
                    nanos = int(((record.get("billing") or {}).get("total_nanos")) or 0)
                    if nanos > threshold:
                        yield text["batch_id"], nanos
                redis.xack(keys.changes, GROUP, entry_id)


def _send(settings, message: alerts.Message) -> bool:
    """POST the message to every alert URL, signed; True when every destination took it (2xx)."""
    dashboard = f"{settings.public_base_url.rstrip('/')}/dashboard" if settings.public_base_url else None
    body = json.dumps(message.body(dashboard), separators=(",", ":"))
    mid = "alert_" + hashlib.sha256(f"{message.kind}\n{message.subject}\n{message.status}\n{message.first_seen}\n"
                                    f"{message.count}".encode()).hexdigest()[:24]
    ok = True
    for url in settings.alert_urls:
        now = datetime.now(timezone.utc)
        headers = {"webhook-id": mid, "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": Webhook(settings.alert_secret).sign(mid, now, body),
                   "content-type": "application/json", "user-agent": USER_AGENT}
        try:
            with httpx.Client(timeout=SEND_TIMEOUT, follow_redirects=False) as client:
                with client.stream("POST", url, content=body, headers=headers) as response:
                    delivered = response.is_success  # the answer's body is not read: it could be anything
        except httpx.HTTPError as exc:
            log.warning("alert to %s not delivered: %s", masked(url), type(exc).__name__)
            delivered = False
        if not delivered:
            ok = False
    if ok:
        log.info("alert %s %s: %s", message.status, message.kind, message.summary)
    return ok
