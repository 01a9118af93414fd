"""Managed webhook endpoints (``/v1/webhook-endpoints``): the only way to get batch webhooks.

An endpoint holds the URL, the subscribed events and the signing secret; a batch names it by
id. The gateway returns the secret (``signing_secret``) only on create and rotate-secret:
those answers come back as ``SecretBearing`` dicts, whose repr hides it, so printing or
logging the answer does not leak it. Read it with ``answer["signing_secret"]`` and store it.
"""

from __future__ import annotations

from typing import Any

from ._client import BaseClient
from ._validate import check_events, query_params, refuse, segment

SECRET_FIELDS = frozenset({"signing_secret", "secret"})
ENDPOINT_STATUSES = ("active", "disabled")
MAX_NAME_CHARS = 120


class SecretBearing(dict):
    """A dict whose repr (and so str, print, logging and pprint) hides its secret fields."""

    def __repr__(self) -> str:
        shown = {k: ("[redacted]" if k in SECRET_FIELDS and v else v) for k, v in self.items()}
        return repr(shown)

    __str__ = __repr__


def _check_url(url: Any) -> str:
    """Refuse a URL that is not a non-empty string; the gateway judges the rest.

    The gateway requires https and refuses private networks; a local sandbox may accept
    loopback URLs, so no scheme rule is applied here.
    """
    if not isinstance(url, str) or not url.strip():
        refuse("url must be a non-empty string", "webhook_url_required")
    return url


def _check_name(name: Any) -> str:
    """Refuse a name the gateway would refuse (1 to 120 characters)."""
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME_CHARS:
        refuse(f"name must be 1 to {MAX_NAME_CHARS} characters", "invalid_webhook_endpoint_name")
    return name


def _path(endpoint_id: str, action: str = "") -> str:
    """Return the path of one endpoint, or of an action on it."""
    path = f"webhook-endpoints/{segment(endpoint_id, 'endpoint_id')}"
    return f"{path}/{action}" if action else path


class WebhookEndpointsMixin(BaseClient):
    """Create, list, get, update, delete, rotate-secret and test webhook endpoints."""

    def create_webhook_endpoint(
        self, url: str, *, events: list[str] | None = None, name: str | None = None
    ) -> dict[str, Any]:
        """Create an endpoint; the answer (201) carries its ``signing_secret``, hidden from repr.

        Without ``events`` the gateway subscribes the endpoint to its default terminal events.
        """
        body: dict[str, Any] = {"url": _check_url(url)}
        if (checked := check_events(events, "events")) is not None:
            body["events"] = checked
        if name is not None:
            body["name"] = _check_name(name)
        return SecretBearing(self._request("POST", "webhook-endpoints", json=body))

    def list_webhook_endpoints(
        self, *, limit: int | None = None, offset: int | None = None, include_deleted: bool | None = None
    ) -> dict[str, Any]:
        """Return ``{"object": "list", "data": [endpoint, ...]}``, newest first (no secrets)."""
        params = query_params({"limit": limit, "offset": offset, "include_deleted": include_deleted})
        return self._request("GET", "webhook-endpoints", params=params)

    def get_webhook_endpoint(self, endpoint_id: str) -> dict[str, Any]:
        """Return one endpoint (``has_secret`` says whether it has one; the secret is never returned)."""
        return self._request("GET", _path(endpoint_id))

    def update_webhook_endpoint(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        events: list[str] | None = None,
        name: str | None = None,
        status: str | None = None,
    ) -> dict[str, Any]:
        """Change the given fields of an endpoint (``status`` "active" or "disabled")."""
        path = _path(endpoint_id)
        body: dict[str, Any] = {}
        if url is not None:
            body["url"] = _check_url(url)
        if (checked := check_events(events, "events")) is not None:
            body["events"] = checked
        if name is not None:
            body["name"] = _check_name(name)
        if status is not None:
            if status not in ENDPOINT_STATUSES:
                refuse(f"status must be one of {', '.join(ENDPOINT_STATUSES)}, got {status!r}", "invalid_status")
            body["status"] = status
        if not body:
            refuse("give at least one of url, events, name or status to update", "nothing_to_update")
        return self._request("PATCH", path, json=body)

    def delete_webhook_endpoint(self, endpoint_id: str) -> dict[str, Any]:
        """Delete an endpoint; answers ``{"id", "object": "webhook_endpoint", "deleted": true}``."""
        return self._request("DELETE", _path(endpoint_id))

    def rotate_webhook_endpoint_secret(self, endpoint_id: str) -> dict[str, Any]:
        """Give an endpoint a new secret; the answer carries the new ``signing_secret``, hidden from repr.

        Deliveries are signed with the new secret from now on: keep verifying the old one too
        until every receiver has the new one.
        """
        return SecretBearing(self._request("POST", _path(endpoint_id, "rotate-secret")))

    def test_webhook_endpoint(self, endpoint_id: str) -> dict[str, Any]:
        """Ask the gateway to send a signed test delivery (``{ok, status_code, event_id, ...}``).

        The official SDK has this call, but the gateway's source has no such route (it answers 404,
        ``NotFoundError``): ``python -m aistats_hooks endpoints test`` sends its own signed delivery instead.
        """
        return self._request("POST", _path(endpoint_id, "test"))
