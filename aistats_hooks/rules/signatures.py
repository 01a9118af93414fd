"""Sign and verify AI Stats webhook deliveries.

Pure functions over raw bytes, in the manner of stripe-python's webhook
module. The gateway signs ``f"{timestamp}.".encode() + body`` with
HMAC-SHA256, keyed by the whole ``whsec_...`` secret as UTF-8, and sends the
lowercase hex digest in ``x-phaseo-signature`` (bare, or as ``v1=<hex>``).

``verify_signature`` raises nothing but ``SignatureError``, whatever the
headers hold: they are attacker-controlled input.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence

from ..errors import SignatureError

SIGNATURE_HEADER = "x-phaseo-signature"
TIMESTAMP_HEADER = "x-phaseo-timestamp"
USER_AGENT = "Phaseo-Async-Webhook/1.0"
DEFAULT_TOLERANCE = 300

# Generous: one digest is 64 chars, a rotation list a few of them.
MAX_SIGNATURE_HEADER = 4096
# Seconds are 10 digits until 2286, milliseconds 13; anything longer is junk.
MAX_TIMESTAMP_DIGITS = 16
MS_TIMESTAMP_DIGITS = 13

_HEX_DIGEST_LEN = 64
_SEPARATORS = re.compile(r"[,\s]+")


@functools.lru_cache(maxsize=64)
def _keyed_mac(secret: str) -> hmac.HMAC:
    """Return an HMAC primed with the secret, to copy for each message."""
    # Priming once saves hashing the padded key on every request.
    return hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)


def _digest(secret: str, timestamp: bytes, body: bytes) -> bytes:
    """Return the lowercase hex digest of ``timestamp.body`` as ASCII bytes."""
    mac = _keyed_mac(secret).copy()
    mac.update(timestamp + b".")
    mac.update(body)
    return mac.hexdigest().encode("ascii")


def compute_signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """Return the lowercase hex signature the gateway sends for ``body``."""
    return _digest(secret, str(timestamp).encode("ascii"), bytes(body)).decode("ascii")


def _header(headers: Mapping, name: str) -> str | None:
    """Look ``name`` (lowercase) up case-insensitively in any header mapping."""
    # dict, werkzeug Headers and httpx.Headers all answer a direct get;
    # only a plain dict with odd casing needs the scan.
    value = headers.get(name)
    if value is None:
        for key, candidate in headers.items():
            if isinstance(key, str) and key.lower() == name:
                value = candidate
                break
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    value = value.strip(" \t")
    return value or None


def _parse_timestamp(raw: str) -> tuple[bytes, float]:
    """Return the timestamp as sent (bytes) and its value in seconds."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_TIMESTAMP_DIGITS):
        raise SignatureError("bad_timestamp", "x-phaseo-timestamp is not a unix timestamp")
    value = int(raw)
    seconds = value / 1000 if len(raw) >= MS_TIMESTAMP_DIGITS else float(value)
    return raw.encode("ascii"), seconds


def _candidates(raw: str) -> list[bytes]:
    """Return the plausible hex digests in a signature header."""
    if len(raw) > MAX_SIGNATURE_HEADER or not raw.isascii():
        return []
    found = []
    for token in _SEPARATORS.split(raw):
        if token[:3].lower() == "v1=":
            token = token[3:]
        if len(token) == _HEX_DIGEST_LEN:
            found.append(token.lower().encode("ascii"))
    return found


def verify_signature(
    body: bytes,
    headers: Mapping,
    secrets: Sequence[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> int:
    """Verify a delivery and return its timestamp in seconds, or raise ``SignatureError``."""
    if isinstance(secrets, str):
        # A bare string is a Sequence too; iterating it would key on single chars.
        secrets = (secrets,)
    secrets = [s for s in secrets if s]
    if not secrets:
        raise SignatureError("no_secret", "no webhook secret is configured")
    signature = _header(headers, SIGNATURE_HEADER)
    raw_timestamp = _header(headers, TIMESTAMP_HEADER)
    if signature is None or raw_timestamp is None:
        raise SignatureError("missing_header", "x-phaseo-signature and x-phaseo-timestamp are required")
    timestamp, seconds = _parse_timestamp(raw_timestamp)
    # Check freshness before hashing: cheap rejection of replays and junk.
    if abs((time.time() if now is None else now) - seconds) > tolerance:
        raise SignatureError("stale", f"timestamp is more than {tolerance}s from now")
    candidates = _candidates(signature)
    body = bytes(body)
    for secret in secrets:
        expected = _digest(secret, timestamp, body)
        for candidate in candidates:
            if hmac.compare_digest(expected, candidate):
                return int(seconds)
    raise SignatureError("mismatch", "no signature matches")


def sign_headers(
    secret: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    event_id: str | None = None,
    event_type: str | None = None,
    delivery_key: str | None = None,
    attempt: int | None = 1,
    max_attempts: int | None = 4,
) -> dict[str, str]:
    """Return the headers the gateway would send with ``body``, signed with ``secret``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    optional = {
        "x-phaseo-event-id": event_id,
        "x-phaseo-event-type": event_type,
        "x-phaseo-delivery-key": delivery_key,
        "x-phaseo-attempt": attempt,
        "x-phaseo-max-attempts": max_attempts,
    }
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    headers.update({name: str(value) for name, value in optional.items() if value is not None})
    headers[TIMESTAMP_HEADER] = str(timestamp)
    headers[SIGNATURE_HEADER] = compute_signature(secret, timestamp, body)
    return headers
