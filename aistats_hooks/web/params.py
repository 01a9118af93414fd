"""Query parameters every list endpoint reads the same way: none unknown, a bounded ``limit``.

A bad one raises ``BadParameter``, which ``errors.init_app`` answers as
``400 {"error": "bad_request", "reason": ...}``.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import request


class BadParameter(ValueError):
    """A query parameter the endpoint does not take, or a malformed value."""


def only(allowed: Iterable[str]) -> None:
    """Refuse the request's parameters that are not in ``allowed``."""
    unknown = set(request.args) - set(allowed)
    if unknown:
        raise BadParameter(f"unknown parameter(s): {', '.join(sorted(unknown))}")


def limit(default: int, maximum: int) -> int:
    """Return ``limit`` as a whole number from 1 to ``maximum`` (``default`` when absent)."""
    raw = request.args.get("limit", str(default))
    # isascii: '²'.isdigit() is true but int('²') raises.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        raise BadParameter(f"limit must be a whole number from 1 to {maximum}")
    return int(raw)
