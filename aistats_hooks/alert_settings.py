"""AISTATS_ALERT_URLS / _SECRET / _BATCH_USD / _DAILY_USD: who is told when work fails for good, checked at start.

Alerts are signed like forwarded messages (Standard Webhooks): with
``AISTATS_ALERT_SECRET``, or ``AISTATS_FORWARD_SECRET`` when only that is set.
The two money thresholds are optional (unset: no such alert).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from .errors import ConfigError
from .urls import masked
from .forward_settings import check_secret


def _usd_nanos(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ConfigError(name, f"expected an amount in USD such as 25 or 0.50, got {raw[:20]!r}") from None
    if not value.is_finite() or value <= 0 or value > 10**9:
        raise ConfigError(name, f"expected an amount in USD above 0, got {raw[:20]!r}")
    return int(value * 1_000_000_000)


def alert_settings(env: Mapping[str, str]) -> dict:
    """Return the alert fields of ``Settings`` from ``env``; raise ``ConfigError`` naming a bad variable."""
    urls = tuple(dict.fromkeys(u.strip() for u in env.get("AISTATS_ALERT_URLS", "").split(",") if u.strip()))
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("AISTATS_ALERT_URLS", "expected comma-separated http:// or https:// URLs, got "
                                                    f"{masked(url)[:80]!r}")
    secret = env.get("AISTATS_ALERT_SECRET", "").strip() or env.get("AISTATS_FORWARD_SECRET", "").strip() or None
    if secret is not None and env.get("AISTATS_ALERT_SECRET", "").strip():
        try:
            check_secret(secret)
        except ConfigError as exc:
            raise ConfigError("AISTATS_ALERT_SECRET", exc.expected) from None
    if urls and secret is None:
        raise ConfigError("AISTATS_ALERT_SECRET", "required with AISTATS_ALERT_URLS (whsec_ followed by base64 of 24 "
                                                  "to 64 random bytes), unless AISTATS_FORWARD_SECRET is set")
    return {"alert_urls": urls, "alert_secret": secret,
            "alert_batch_nanos": _usd_nanos(env, "AISTATS_ALERT_BATCH_USD"),
            "alert_daily_nanos": _usd_nanos(env, "AISTATS_ALERT_DAILY_USD")}
