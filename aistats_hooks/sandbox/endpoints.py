"""Managed webhook endpoints: the only way a batch gets webhooks at the gateway.

An endpoint holds the URL, the subscribed events and the signing secret; a
batch names it by id, and every delivery is signed with the endpoint's secret
current at send time (so a rotation takes effect for retries too).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import endpoint_validation, nested
from .ids import signing_secret

KINDS = ("created", "status_changed", "progress", "completed", "failed", "cancelled", "expired")
# Event names an endpoint may subscribe to (the SDK's WebhookEndpointEvent).
KNOWN = frozenset(f"{family}.{kind}" for family in ("job", "video", "batch") for kind in KINDS)
DEFAULT_EVENTS = ("video.completed", "video.failed", "video.cancelled",
                  "batch.completed", "batch.failed", "batch.cancelled")
# The sandbox delivers locally, so unlike the gateway it accepts loopback http(s).
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_NAME = 120


def iso_micro(seconds: float) -> str:
    """Format unix seconds the way the gateway's database does: microseconds and +00:00."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="microseconds")


def normalize_events(value: Any) -> list[str]:
    """Trim, lower-case and de-duplicate any non-empty names; the default when none is given.

    As core/webhook-endpoints.ts normalizeWebhookEndpointEvents: unknown names are kept (they simply
    never match an event); only a non-array or an empty name is a 400 (the route's zod schema)."""
    if value is None:
        return list(DEFAULT_EVENTS)
    if not isinstance(value, list) or not all(isinstance(e, str) and e.strip() for e in value):
        raise endpoint_validation("Invalid webhook endpoint payload.",
                                  [{"path": ["events"], "message": "Expected an array of non-empty strings"}])
    names = list(dict.fromkeys(e.strip().lower() for e in value))
    return names or list(DEFAULT_EVENTS)


def normalize_url(value: Any) -> str:
    """Return the URL as the gateway stores it (no fragment), or raise its 400."""
    if not isinstance(value, str) or not value.strip():
        raise endpoint_validation("Invalid webhook endpoint payload.", [{"path": ["url"], "message": "Invalid url"}])
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise endpoint_validation("Invalid webhook endpoint payload.", [{"path": ["url"], "message": "Invalid url"}])
    local = parts.hostname in LOCAL_HOSTS
    if parts.scheme != "https" and not local:
        raise endpoint_validation("Invalid webhook endpoint URL.", {"reason": "webhook_url_must_use_https"})
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


def _name(value: Any, default: str | None) -> str | None:
    """Validate an endpoint name (1-120 characters after trimming)."""
    if value is None:
        return default
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= MAX_NAME:
        raise endpoint_validation("Invalid webhook endpoint payload.",
                                  [{"path": ["name"], "message": "Expected 1 to 120 characters"}])
    return value.strip()


@dataclass
class Endpoint:
    """One managed endpoint; ``secret`` leaves the sandbox only on create and rotate."""

    id: str
    workspace_id: str
    name: str
    url: str
    events: list[str]
    secret: str
    created_at: float
    updated_at: float
    status: str = "active"
    deleted_at: float | None = None

    def public(self) -> dict[str, Any]:
        """Return the endpoint as the gateway shows it (camelCase keys, ISO times)."""
        return {
            "id": self.id,
            "workspaceId": self.workspace_id,
            "name": self.name,
            "url": self.url,
            "status": self.status,
            "events": list(self.events),
            "hasSecret": True,
            "createdBy": None,  # API-key callers have no user id
            "createdAt": iso_micro(self.created_at),
            "updatedAt": iso_micro(self.updated_at),
            "deletedAt": iso_micro(self.deleted_at) if self.deleted_at is not None else None,
        }

    def with_secret(self) -> dict[str, Any]:
        """Return the public endpoint plus its ``signing_secret`` (create and rotate only)."""
        return dict(self.public(), signing_secret=self.secret)


def not_found() -> Exception:
    """Return the endpoint routes' 404."""
    return nested(404, "not_found", message="Webhook endpoint not found.")


class Endpoints:
    """The workspace's endpoints, thread-safe."""

    def __init__(self, workspace_id: str, clock) -> None:
        self.workspace_id = workspace_id
        self.clock = clock
        self._lock = threading.RLock()
        self._by_id: dict[str, Endpoint] = {}

    def create(self, body: Any) -> Endpoint:
        """Validate ``{url, events, name}`` and store a new endpoint with a fresh secret."""
        if not isinstance(body, dict):
            raise endpoint_validation("Invalid webhook endpoint payload.", [{"path": [], "message": "Expected object"}])
        url = normalize_url(body.get("url"))
        events = normalize_events(body.get("events"))
        name = _name(body.get("name"), "Async webhooks")
        now = self.clock.now()
        # The gateway's ids are the database's gen_random_uuid().
        endpoint = Endpoint(str(uuid.uuid4()), self.workspace_id, name, url, events, signing_secret(), now, now)
        with self._lock:
            self._by_id[endpoint.id] = endpoint
        return endpoint

    def list(self, limit: int = 100, offset: int = 0, include_deleted: bool = False) -> list[Endpoint]:
        """Return endpoints, newest first."""
        with self._lock:
            rows = sorted(self._by_id.values(), key=lambda e: e.created_at, reverse=True)
        rows = [e for e in rows if include_deleted or e.status != "deleted"]
        return rows[offset:offset + limit]

    def get(self, endpoint_id: str) -> Endpoint:
        """Return a live endpoint or raise the 404."""
        with self._lock:
            endpoint = self._by_id.get(endpoint_id)
        if endpoint is None or endpoint.status == "deleted":
            raise not_found()
        return endpoint

    def update(self, endpoint_id: str, body: Any) -> Endpoint:
        """Apply a PATCH of name, url, events and status."""
        if not isinstance(body, dict):
            raise endpoint_validation("Invalid webhook endpoint payload.", [{"path": [], "message": "Expected object"}])
        status = body.get("status")
        if status is not None and status not in ("active", "disabled"):
            raise endpoint_validation("Invalid webhook endpoint payload.",
                                      [{"path": ["status"], "message": "Expected 'active' | 'disabled'"}])
        name = _name(body.get("name"), None)
        events = normalize_events(body["events"]) if body.get("events") is not None else None
        url = normalize_url(body["url"]) if body.get("url") is not None else None
        with self._lock:
            endpoint = self.get(endpoint_id)
            endpoint.name = name or endpoint.name
            endpoint.url = url or endpoint.url
            endpoint.events = events if events is not None else endpoint.events
            endpoint.status = status or endpoint.status
            endpoint.updated_at = self.clock.now()
        return endpoint

    def rotate(self, endpoint_id: str, secret: str | None = None) -> Endpoint:
        """Give the endpoint a new secret (``secret`` is the sandbox-only knob for tests)."""
        with self._lock:
            endpoint = self.get(endpoint_id)
            endpoint.secret = secret or signing_secret()
            endpoint.updated_at = self.clock.now()
        return endpoint

    def delete(self, endpoint_id: str) -> dict[str, Any]:
        """Mark the endpoint deleted; deliveries to it stop."""
        with self._lock:
            endpoint = self.get(endpoint_id)
            endpoint.status = "deleted"
            endpoint.deleted_at = endpoint.updated_at = self.clock.now()
        return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}

    def active(self, endpoint_id: str | None) -> Endpoint | None:
        """Return the endpoint if it exists and is active (what a delivery needs), else None."""
        with self._lock:
            endpoint = self._by_id.get(endpoint_id or "")
        return endpoint if endpoint is not None and endpoint.status == "active" else None
