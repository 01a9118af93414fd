"""AISTATS_FORWARD_URLS / _SECRET / _EVENTS: where reconciled transitions are forwarded, read and checked at start.

A bad value stops the process (``ConfigError``, exit 2) rather than failing
message after message later: a destination that is not http(s), a secret that
is not ``whsec_`` + base64 as the Standard Webhooks spec defines, or an event
name that is not a transition.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from urllib.parse import urlsplit

from .errors import ConfigError
from .urls import masked
from .rules.transitions import NAMES, Transition

# The default: what a batch ended as, and its settled bill.
DEFAULT_EVENTS = (Transition.COMPLETED.value, Transition.FAILED.value, Transition.CANCELLED.value,
                  Transition.EXPIRED.value, Transition.BILLING_SETTLED.value)
SECRET_PREFIX = "whsec_"


def forward_settings(env: Mapping[str, str]) -> dict:
    """Return the forwarding fields of ``Settings`` from ``env``; raise ``ConfigError`` naming a bad variable."""
    urls = tuple(dict.fromkeys(u.strip() for u in env.get("AISTATS_FORWARD_URLS", "").split(",") if u.strip()))
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # The userinfo and the query string may carry a credential: masked.
            raise ConfigError("AISTATS_FORWARD_URLS", f"expected comma-separated http:// or https:// URLs, "
                                                      f"got {masked(url)[:80]!r}")
    secret = env.get("AISTATS_FORWARD_SECRET", "").strip() or None
    if secret is not None:
        check_secret(secret)
    elif urls:
        raise ConfigError("AISTATS_FORWARD_SECRET", "required with AISTATS_FORWARD_URLS (whsec_ followed by base64 "
                                                    "of 24 to 64 random bytes)")
    raw_events = env.get("AISTATS_FORWARD_EVENTS", "").strip()
    events = tuple(dict.fromkeys(e.strip() for e in raw_events.split(",") if e.strip())) or DEFAULT_EVENTS
    unknown = [e for e in events if e not in NAMES]
    if unknown:
        raise ConfigError("AISTATS_FORWARD_EVENTS", f"unknown transition {unknown[0]!r}; expected some of "
                                                    f"{', '.join(t.value for t in Transition)}")
    return {"forward_urls": urls, "forward_secret": secret, "forward_events": events}


def check_secret(secret: str) -> None:
    """Raise ``ConfigError`` unless ``secret`` is ``whsec_`` + base64 of 24 to 64 bytes (never echoing it)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ConfigError("AISTATS_FORWARD_SECRET", "expected whsec_ followed by base64")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("AISTATS_FORWARD_SECRET", "the part after whsec_ is not valid base64") from None
    if not 24 <= len(key) <= 64:
        raise ConfigError("AISTATS_FORWARD_SECRET", f"expected 24 to 64 bytes after decoding, got {len(key)}")


def generate_secret() -> str:
    """Return a new secret as the spec defines it (``whsec_`` + base64 of 32 random bytes)."""
    import secrets

    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
