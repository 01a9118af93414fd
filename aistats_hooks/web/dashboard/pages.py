"""The dashboard's pages (GET only): overview, batches, one batch, failed work."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from flask import redirect, render_template, request, url_for
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from ... import dead_letters, queries, upstream_health

from ...effects import forwarding, handler_runs
from ...overview import RANGES
from ...overview import overview as read_overview
from ...rules.status import BatchStatus
from ..context import get_settings, get_store
from . import access, bp, charts

log = logging.getLogger("aistats_hooks.web")
STATUSES = [s.value for s in BatchStatus]
PAGE = 25
FAILED_LIMIT = 100
# What a stored delivery's outcome means, for people.
OUTCOMES = {"queued": "queued a reconcile", "coalesced": "joined a waiting reconcile",
            "final": "batch already final", "duplicate": "duplicate", "ignored": "not a batch event"}


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    """Errors inside the dashboard are pages, not JSON."""
    return render_template("dashboard/error.html", code=exc.code, name=exc.name,
                           description=exc.description), exc.code or 500


@bp.errorhandler(RedisError)
def redis_down(exc: RedisError):
    log.error("redis unavailable: %s", type(exc).__name__)
    return render_template("dashboard/error.html", code=503, name="Store unavailable",
                           description="Redis did not answer; retry in a moment."), 503


@bp.get("/")
@access.login_required
def overview():
    """Every number on one page, each linking to the list behind it."""
    store = get_store()
    data = read_overview(store, span=request.args.get("range", ""))
    spend = data["spend"]
    days = spend["per_day"]["days"]
    peak_model = max((g["total_nanos"] for g in spend["by_model"]["groups"]), default=0)
    peak_provider = max((g["total_nanos"] for g in spend["by_provider"]["groups"]), default=0)
    return render_template(
        "dashboard/overview.html", data=data, statuses=STATUSES, chart=charts.spend_per_day(days),
        days_with_spend=[d for d in days if d["total_nanos"]], share_bar=charts.share_bar,
        peak_model=peak_model, peak_provider=peak_provider, outcomes=OUTCOMES,
        upstream=upstream_health.read(store.redis, store.keys), ranges=list(RANGES),
    )


@bp.get("/batches")
@access.login_required
def batches():
    """Batches newest first, filtered by status, session or model; search by id; cursor pages."""
    args = request.args
    wanted = (args.get("id") or "").strip()
    if wanted:
        if get_store().get(wanted) is not None:
            return redirect(url_for("dashboard.batch", batch_id=wanted))
    status = args.get("status") or None
    if status and status not in STATUSES:
        status = None
    filters = {"status": status, "session_id": (args.get("session_id") or "").strip() or None,
               "model": (args.get("model") or "").strip() or None}
    cursor = args.get("cursor") or None
    try:
        if cursor:
            queries.decode_cursor(cursor)
    except (ValueError, UnicodeDecodeError):
        cursor = None
    window = _window(args)
    page = queries.list_batches(get_store(), limit=PAGE, cursor=cursor, **filters, created_from=window["low"],
                                created_to=window["high"], oldest_first=window["order"] == "oldest")
    active = {k: v for k, v in filters.items() if v}
    active.update({k: window[k] for k in ("from", "to") if window[k]})
    if window["order"] == "oldest":
        active["order"] = "oldest"
    return render_template("dashboard/batches.html", page=page, filters=filters, statuses=STATUSES,
                           next_url=url_for("dashboard.batches", cursor=page["next_cursor"], **active)
                           if page["next_cursor"] else None,
                           first_url=url_for("dashboard.batches", **active) if cursor else None,
                           searched=wanted, progress=charts.progress, window=window)


def _window(args) -> dict:
    """The Batches page's date window (``from`` / ``to``, YYYY-MM-DD, UTC days, inclusive) and order."""
    def day(name: str, end: bool) -> tuple[str | None, int | None]:
        raw = (args.get(name) or "").strip()
        try:
            start = datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        except ValueError:
            return None, None  # empty or not a date: no bound
        return raw, int((start + timedelta(days=1 if end else 0)).timestamp() * 1000) - (1 if end else 0)

    (frm, low), (to, high) = day("from", False), day("to", True)
    return {"from": frm, "to": to, "low": low, "high": high,
            "order": "oldest" if args.get("order") == "oldest" else "newest"}


@bp.get("/batches/<batch_id>")
@access.login_required
def batch(batch_id: str):
    """One batch: its record, deliveries, reconciles and the buttons that act on it."""
    store = get_store()
    record = store.get(batch_id)
    events = store.events(batch_id)
    if record is None and not events:
        return render_template("dashboard/error.html", code=404, name="No such batch",
                               description=f"No batch {batch_id} is known here."), 404
    settings = get_settings()
    # Deliveries are stored only after their signature verified, unless the
    # service accepts unsigned ones (no secret at all and AISTATS_ALLOW_UNSIGNED=1).
    unsigned = settings.allow_unsigned and not settings.webhook_secrets
    return render_template(
        "dashboard/batch.html", batch_id=batch_id, record=record or {}, events=events,
        progress=charts.progress((record or {}).get("request_counts")), outcomes=OUTCOMES,
        signature="not checked (AISTATS_ALLOW_UNSIGNED)" if unsigned else "verified",
        can_forget=callable(getattr(store, "forget", None)),
        handler_runs=handler_runs.of_batch(store.redis, store.keys, batch_id),
        # Destinations masked (urls.masked): a password, token or query value is never on a page.
        forwarded_messages=[forwarding.public(m) for m in forwarding.messages(store.redis, store.keys,
                                                                              batch_id=batch_id, limit=200)],
    )


@bp.get("/failed")
@access.login_required
def failed():
    """Failed reconciles as RQ keeps them, newest first, with their last error and attempts."""
    queue = get_store().queue
    return render_template("dashboard/failed.html", jobs=dead_letters.failed_jobs(queue, limit=FAILED_LIMIT),
                           total=dead_letters.count(queue), limit=FAILED_LIMIT)
