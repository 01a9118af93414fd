"""The dashboard's forms that change state: reconcile now, forget a batch, requeue failed jobs.

Each is a POST carrying the session's CSRF token (``access.check_csrf``
runs before every dashboard request) and answers with a redirect back to a
page, with a one-line message (post/redirect/get: a reload never repeats it).
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from ... import dead_letters
from ...rules.merge import is_final
from ..context import get_store
from . import access, bp


@bp.post("/batches/<batch_id>/reconcile")
@access.login_required
def reconcile_now(batch_id: str):
    """Queue a reconcile of the batch at once (no debounce); coalesces with one already waiting."""
    store = get_store()
    record = store.get(batch_id)
    if record is None and not store.events(batch_id):
        abort(404, description=f"No batch {batch_id} is known here.")
    outcome = store.request_reconcile(batch_id, debounce=False)
    message = "Reconcile queued." if outcome == "queued" else "A reconcile was already waiting: joined it."
    if record is not None and is_final(record):
        message += " The batch is final and settled: the worker confirms that without asking the gateway."
    flash(message)
    return redirect(url_for("dashboard.batch", batch_id=batch_id))


@bp.get("/batches/<batch_id>/forget")
@access.login_required
def forget_confirm(batch_id: str):
    """Ask before forgetting: the record, its deliveries and its ledger share go."""
    if not callable(getattr(get_store(), "forget", None)):
        abort(404, description="This version cannot forget batches.")
    return render_template("dashboard/forget.html", batch_id=batch_id)


@bp.post("/batches/<batch_id>/forget")
@access.login_required
def forget(batch_id: str):
    """Forget the batch (only once confirmed on the page before)."""
    store = get_store()
    if not callable(getattr(store, "forget", None)):
        abort(404, description="This version cannot forget batches.")
    if request.form.get("confirm") != "yes":
        return redirect(url_for("dashboard.forget_confirm", batch_id=batch_id))
    store.forget(batch_id)
    flash(f"Forgot batch {batch_id}.")
    return redirect(url_for("dashboard.batches"))


@bp.post("/failed/<job_id>/requeue")
@access.login_required
def requeue(job_id: str):
    """Put one failed job back on its queue."""
    if dead_letters.requeue(get_store().queue, job_id):
        flash(f"Requeued job {job_id}.")
    else:
        flash(f"Job {job_id} is no longer in the failed list.")
    return redirect(url_for("dashboard.failed"))


@bp.post("/failed/requeue-all")
@access.login_required
def requeue_all():
    """Put every failed job back on its queue."""
    count = dead_letters.requeue_all(get_store().queue)
    flash(f"Requeued {count} job{'s' if count != 1 else ''}.")
    return redirect(url_for("dashboard.failed"))
