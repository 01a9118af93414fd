"""Who may see the dashboard: log in with the query token, a signed session cookie, CSRF, strict headers.

The session is Flask's signed cookie (itsdangerous, keyed by
``AISTATS_SESSION_SECRET``): HttpOnly, ``SameSite=Strict``, scoped to
``/dashboard``, and ``Secure`` whenever the request came over https. It holds
no secret: only a fingerprint of the token it was opened with (so changing
``QUERY_API_TOKEN`` logs every session out), when, the CSRF token, and a
random session id. A login lives on the server too, as a Redis key named by a
digest of that id (``Keys.dashboard_session``, expiring with ``MAX_AGE``),
read on every dashboard request: logging out deletes it, so a copy of the
cookie kept from before is a stranger's (the login page, and a CSRF token
that no longer works). Wrong tokens at the login are throttled (``guesses``).

With no ``AISTATS_SESSION_SECRET`` or no ``QUERY_API_TOKEN`` the dashboard
is off and every page says which variable to set: a key generated per
process would log people out whenever gunicorn's workers disagree, and an
unset token must never open the data (the query API fails closed the same way).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from flask import Flask, Request, Response, abort, g, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from ...config import Settings
from ..context import get_settings, get_store

COOKIE = "aistats_dashboard"
MAX_AGE = 12 * 3600  # a login lasts a working day
CSRF_FIELD = "csrf_token"
SID = "sid"
# No inline script or style anywhere: every page uses /dashboard/static only.
CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


class DashboardSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with ``Secure`` decided per request (https or not)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return _is_https(request) or bool(app.config.get("SESSION_COOKIE_SECURE"))


def _is_https(req: Request) -> bool:
    return req.is_secure or req.headers.get("X-Forwarded-Proto", "").lower() == "https"


def init_app(app: Flask, settings: Settings) -> None:
    """Configure the session cookie; the key is the session secret (None leaves the dashboard off)."""
    app.secret_key = settings.session_secret
    app.session_interface = DashboardSessions()
    app.config.update(SESSION_COOKIE_NAME=COOKIE, SESSION_COOKIE_PATH="/dashboard",
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict")


def off_reason(settings: Settings) -> str | None:
    """Return why the dashboard is off (names of unset variables, never values), or None."""
    missing = [name for name, value in (("AISTATS_SESSION_SECRET", settings.session_secret),
                                        ("QUERY_API_TOKEN", settings.query_api_token)) if not value]
    return f"set {' and '.join(missing)} to turn the dashboard on" if missing else None


def fingerprint(settings: Settings) -> str:
    """A keyed digest of the query token: tells a session which token opened it without holding it."""
    key = (settings.session_secret or "").encode()
    return hmac.new(key, (settings.query_api_token or "").encode(), hashlib.sha256).hexdigest()[:32]


def token_matches(given: str, settings: Settings) -> bool:
    """Compare a typed token with ``QUERY_API_TOKEN`` in constant time."""
    token = settings.query_api_token
    return bool(token) and hmac.compare_digest(given.strip().encode(), token.encode())


def _server_key(sid: str) -> str:
    # A digest, not the id: a reader of Redis cannot turn the key into a cookie.
    return get_store().keys.dashboard_session(hashlib.sha256(sid.encode()).hexdigest()[:40])


def log_in(settings: Settings) -> None:
    """Open a fresh session (a new CSRF token too: nothing from before the login carries over)."""
    session.clear()
    sid = secrets.token_urlsafe(32)
    get_store().redis.set(_server_key(sid), "1", ex=MAX_AGE)
    session[SID] = sid
    session["who"] = fingerprint(settings)
    session["at"] = int(time.time())
    session[CSRF_FIELD] = secrets.token_urlsafe(24)
    g.dashboard_live = True


def log_out() -> None:
    """End the session on the server too: this cookie, or any copy of it, opens nothing from now on."""
    sid = session.get(SID)
    if isinstance(sid, str):
        get_store().redis.delete(_server_key(sid))
    session.clear()


def _live() -> bool:
    """Tell whether this request's session id names a login the server still has (one read per request)."""
    if "dashboard_live" not in g:
        sid = session.get(SID)
        g.dashboard_live = isinstance(sid, str) and bool(get_store().redis.exists(_server_key(sid)))
    return g.dashboard_live


def drop_ended_session() -> None:
    """Forget a cookie whose login ended on the server (logged out or expired), CSRF token and all."""
    if SID in session and not _live():
        session.clear()


def logged_in(settings: Settings) -> bool:
    """Tell whether this request's session was opened with the current token, less than MAX_AGE ago, and lives."""
    who, at = session.get("who"), session.get("at")
    return (isinstance(who, str) and hmac.compare_digest(who, fingerprint(settings))
            and isinstance(at, int) and 0 <= time.time() - at < MAX_AGE and _live())


def csrf_token() -> str:
    """Return this session's CSRF token (made on first use), for every form."""
    if not isinstance(session.get(CSRF_FIELD), str):
        session[CSRF_FIELD] = secrets.token_urlsafe(24)
    return session[CSRF_FIELD]


def check_csrf() -> None:
    """Refuse (400) a state-changing request whose form does not carry the session's CSRF token.

    Runs before every dashboard view: an ended session is dropped first, so its token fails too.
    """
    if request.endpoint != "dashboard.static" and off_reason(get_settings()) is None:
        drop_ended_session()
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    expected = session.get(CSRF_FIELD)
    given = request.form.get(CSRF_FIELD, "")
    if not isinstance(expected, str) or not hmac.compare_digest(given.encode(), expected.encode()):
        abort(400, description="this form has expired or did not come from this dashboard: reload the page")


def login_required(view: Callable) -> Callable:
    """Decorate a page: off page when the dashboard is off, login redirect when not logged in."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        settings = get_settings()
        reason = off_reason(settings)
        if reason:
            return render_template("dashboard/off.html", reason=reason), 503
        if not logged_in(settings):
            if request.method != "GET":
                abort(401, description="your session ended: log in again")
            return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped


def safe_next(target: str | None) -> str:
    """Return a post-login destination inside the dashboard, never another site (400 for control characters)."""
    if target and any(ord(c) < 32 or ord(c) == 127 for c in target):
        # CR/LF would split the Location header: refuse rather than fail building the redirect.
        abort(400, description="next must be a dashboard path without control characters")
    if target and target.startswith("/dashboard") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("dashboard.overview")


def secure_headers(response: Response) -> Response:
    """Add the dashboard's security headers to a response."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if not request.path.startswith("/dashboard/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response
