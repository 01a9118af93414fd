"""``endpoints test``: a signed test delivery of our own to an endpoint's URL.

The gateway's source has no ``POST /v1/webhook-endpoints/{id}/test``; like ``trigger``,
we sign a ``webhook.test`` event with the endpoint's stored secret (the one the gateway
signs its deliveries with) and POST it to the endpoint's URL, so the whole path (URL,
receiver, secret) is checked.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import httpx

from ..rules.signatures import sign_headers

PREVIEW_CHARS = 500
# The gateway's delivery timeout (core/async-notifications.ts DEFAULT_WEBHOOK_DELIVERY_TIMEOUT_MS).
TIMEOUT_SECONDS = 30.0


def send(endpoint: dict[str, Any], secret: str, *, timeout: float = TIMEOUT_SECONDS) -> dict[str, Any]:
    """POST a signed ``webhook.test`` event to the endpoint's URL; report how it answered."""
    now = int(time.time())
    endpoint_id, url = str(endpoint.get("id")), str(endpoint.get("url"))
    event_id = f"evt_webhook_test_{endpoint_id}_{secrets.token_hex(8)}"
    body = json.dumps({
        "id": event_id, "type": "webhook.test", "created_at": now,
        "delivery": {"key": "webhook.test", "attempt": 1, "max_attempts": 1},
        "data": {"object": "webhook_endpoint", "id": endpoint_id, "url": url},
    }, separators=(",", ":")).encode()
    headers = sign_headers(secret, body, timestamp=now, event_id=event_id, event_type="webhook.test",
                           delivery_key="webhook.test", attempt=1, max_attempts=1)
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        return {"ok": False, "status_code": None, "event_id": event_id, "url": url,
                "error": f"{type(exc).__name__}: {exc}", "response_body_preview": None}
    ok = 200 <= response.status_code < 300
    return {"ok": ok, "status_code": response.status_code, "event_id": event_id, "url": url,
            "error": None if ok else f"HTTP {response.status_code}",
            "response_body_preview": response.text[:PREVIEW_CHARS]}
