"""``require_token``: the one bearer-token check (Flask's ``login_required`` pattern).

The query API and ``/metrics`` answer only a request carrying
``Authorization: Bearer <QUERY_API_TOKEN>``. With no token configured they
fail closed: every request is refused, because an unset variable must never
open the data to anyone who can reach the port. Wrong tokens are throttled
(``guesses``): a client that guessed too often answers 429 with
``Retry-After`` for the rest of the minute.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable

from flask import request

from ..config import Settings
from . import guesses
from .context import get_settings
from .errors import error

OFF_REASON = "the query API is disabled: QUERY_API_TOKEN is not set"


def token_refusal(settings: Settings, off_reason: str = OFF_REASON):
    """Return the 401 (or 429) response for this request, or None when its bearer token is right."""
    token = settings.query_api_token
    if not token:
        return error(401, "unauthorized", off_reason)
    wait = guesses.throttled()
    if wait is not None:
        response, status = error(429, "too_many_requests", f"too many wrong tokens: retry in {wait} s")
        response.headers["Retry-After"] = str(wait)
        return response, status
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # compare_digest: the time taken must not tell how much of a guess was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        if given.strip():  # a guess; a request with no token at all guesses nothing
            guesses.failed("query API")
        return error(401, "unauthorized", "missing or wrong bearer token")
    return None


def require_token(
    view: Callable | None = None,
    *,
    public_if: Callable[[Settings], bool] | None = None,
    off_reason: str = OFF_REASON,
):
    """Decorate a view so it answers 401 without the bearer token.

    ``public_if(settings)`` true lets every request through (``METRICS_PUBLIC``);
    ``off_reason`` is the refusal's reason when no token is configured.
    Use bare (``@require_token``) or with options (``@require_token(public_if=...)``).
    """

    def decorate(inner: Callable) -> Callable:
        @functools.wraps(inner)
        def wrapped(*args, **kwargs):
            settings = get_settings()
            if not (public_if and public_if(settings)):
                refusal = token_refusal(settings, off_reason)
                if refusal is not None:
                    return refusal
            return inner(*args, **kwargs)

        return wrapped

    return decorate(view) if view is not None else decorate
