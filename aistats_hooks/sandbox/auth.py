"""Who may call what: the gateway's two kinds of key (pipeline/before/auth.ts).

Ordinary (inference) keys, ``phaseo_v1_sk_...``, call the gateway routes (/v1/batches,
/v1/files...). Management keys, ``phaseo_v1_mk_...`` with settings:read / settings:write,
are the only keys the control routes such as /v1/webhook-endpoints accept; the gateway
refuses them anywhere else. Legacy ``aistats_v1_sk_`` keys stop working on 2027-01-01.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import datetime, timezone

# auth.ts LEGACY_AISTATS_KEY_CUTOFF_MS: Date.UTC(2027, 0, 1).
LEGACY_KEY_CUTOFF = datetime(2027, 1, 1, tzinfo=timezone.utc).timestamp()
LEGACY_PREFIX = "aistats_v1_sk_"
MANAGEMENT_PREFIX = "phaseo_v1_mk_"
# Routes mounted under control/ (authenticateManagement); everything else under /v1 is the gateway's.
MANAGEMENT_PATHS = ("/v1/webhook-endpoints",)


def default_management_key(api_key: str) -> str:
    """The sandbox's management key when none is given: derived from the API key, so a caller knowing one can
    compute it, and it is never equal to it."""
    return MANAGEMENT_PREFIX + "sandbox_" + hashlib.sha256(b"mk:" + api_key.encode()).hexdigest()[:32]


def _same(token: str, key: str) -> bool:
    return hmac.compare_digest(token.encode(), key.encode())


def failure(authorization: str, path: str, api_key: str, management_key: str,
            now: float | None = None, forced: str | None = None) -> str | None:
    """Return the reason ``authorization`` may not call ``path`` (the gateway's reasons), or None."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return "missing_or_invalid_authorization_header"
    management = path == MANAGEMENT_PATHS[0] or path.startswith(MANAGEMENT_PATHS[0] + "/")
    if management:
        # authenticateManagement: anything but a phaseo mk key is refused before any lookup.
        if not token.startswith(MANAGEMENT_PREFIX):
            return "management_key_required"
        if not _same(token, management_key):
            return "key_not_found_or_revoked"
        return forced
    if token.startswith(LEGACY_PREFIX) and (time.time() if now is None else now) >= LEGACY_KEY_CUTOFF:
        return "legacy_key_prefix_retired"
    if token.startswith(MANAGEMENT_PREFIX):
        return "management_key_not_valid_for_gateway"
    if not _same(token, api_key):
        return "key_not_found_or_revoked"
    # A knob for tests: the transient refusals (db_error, server_misconfig_missing_pepper) of a valid key.
    return forced
