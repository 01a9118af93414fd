"""Identifiers shaped like the gateway's: ULIDs, batch ids, request ids, endpoint ids."""

from __future__ import annotations

import secrets
import uuid
import time

# Crockford's base32, the ULID alphabet.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(now: float | None = None) -> str:
    """Return a 26-character ULID: 48 bits of milliseconds, then 80 random bits."""
    ms = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    value = (ms << 80) | secrets.randbits(80)
    return "".join(_ALPHABET[(value >> shift) & 31] for shift in range(125, -1, -5))


def batch_id(now: float | None = None) -> str:
    """Return a gateway batch id: ``batch_`` and a ULID."""
    return "batch_" + ulid(now)


def request_id(now: float | None = None) -> str:
    """Return a gateway request id: ``G-`` and a ULID."""
    return "G-" + ulid(now)


def new_id(prefix: str) -> str:
    """Return a random id with ``prefix``; ids are never seeded, so restarts never reuse one."""
    return f"{prefix}_{secrets.token_hex(12)}"


def signing_secret() -> str:
    """Return a fresh webhook signing secret, ``whsec_`` and 32 random bytes in base64url."""
    return "whsec_" + secrets.token_urlsafe(32)


def output_file_id(provider: str) -> str:
    """Return a batch output file's id: Google's is a name like ``files/batch-out-...`` (a slash in an id)."""
    if provider == "google-ai-studio":
        return "files/batch-out-" + secrets.token_hex(12)
    # Mistral's files are UUIDs.
    return str(uuid.uuid4()) if provider == "mistral" else new_id("file_out")
