"""The dashboard: server-rendered pages over the same read models as the query API.

    /                    redirects to /dashboard
    /dashboard           overview: batches by status, queue, failed work, deliveries, spend charts
    /dashboard/batches   filtered, cursor-paginated list; /dashboard/batches/<id> one batch
    /dashboard/failed    failed reconciles, requeue one or all
    /dashboard/login     one field, ``token`` (QUERY_API_TOKEN); /dashboard/logout

No build step and no CDN: templates, one stylesheet and charts drawn as SVG
on the server (``charts``). Access rules live in ``access``; pages in
``pages``; the forms that change state in ``actions``.
"""

from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint, Flask, flash, make_response, redirect, render_template, request, url_for

from ...config import Settings
from .. import guesses
from ..context import get_settings
from . import access, charts

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates",
               static_folder="static", static_url_path="/static")
root = Blueprint("dashboard_root", __name__)


def init_app(app: Flask, settings: Settings) -> None:
    """Register the dashboard on ``app`` (off, with a page saying why, until its settings are set)."""
    from . import actions, pages, results  # noqa: F401 - they add their views to bp

    access.init_app(app, settings)
    app.register_blueprint(bp)
    app.register_blueprint(root)


@root.get("/")
def home():
    """Send people to the dashboard."""
    return redirect(url_for("dashboard.overview"))


root.after_request(access.secure_headers)
bp.after_request(access.secure_headers)
bp.before_request(access.check_csrf)


@bp.app_template_global()
def csrf_token() -> str:
    return access.csrf_token()


@bp.app_template_filter("usd")
def usd_filter(nanos) -> str:
    """Nanos as dollars; "—" where the cost is not known (pending billing, a missing field, an odd value)."""
    value = charts.whole(nanos)
    return "—" if value is None else charts.usd(value)


@bp.app_template_filter("when")
def when_filter(value) -> str:
    """ISO strings or unix milliseconds as 'YYYY-MM-DD HH:MM:SS UTC'."""
    if value in (None, ""):
        return "—"
    try:
        if isinstance(value, (int, float)):
            stamp = datetime.fromtimestamp(value / 1000, tz=timezone.utc)
        else:
            stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(timezone.utc)
    except (ValueError, OverflowError, OSError):
        return str(value)
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.app_template_filter("count")
def count_filter(value) -> str:
    number = charts.whole(value)
    return "0" if not value else ("—" if number is None else f"{number:,}")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """One field, the query token; a wrong one is refused with 401 and the form again (429 when guessing)."""
    settings = get_settings()
    reason = access.off_reason(settings)
    if reason:
        return render_template("dashboard/off.html", reason=reason), 503
    target = access.safe_next(request.values.get("next"))
    if request.method == "POST":
        wait = guesses.throttled()
        if wait is not None:  # checked before the token: a right guess must look like a wrong one
            response = make_response(render_template(
                "dashboard/error.html", code=429, name="Too Many Requests",
                description=f"Too many wrong tokens: try again in {wait} s."), 429)
            response.headers["Retry-After"] = str(wait)
            return response
        if access.token_matches(request.form.get("token", ""), settings):
            access.log_in(settings)
            return redirect(target)
        guesses.failed("dashboard login")
        return render_template("dashboard/login.html", next=target, refused=True), 401
    if access.logged_in(settings):
        return redirect(target)
    return render_template("dashboard/login.html", next=target, refused=False)


@bp.post("/logout")
def logout():
    """End the session, on the server too (a POST with the CSRF token: a link cannot log anyone out)."""
    access.log_out()
    flash("Logged out.")
    return redirect(url_for("dashboard.login"))
