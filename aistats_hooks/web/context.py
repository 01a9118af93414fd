"""The app's store and settings, reached from any request (Flask's ``get_db`` pattern).

``create_app`` builds both once and hands them to ``init_app``; views and
tests call ``get_store()`` / ``get_settings()`` instead of spelling
``current_app.extensions[...]``, so where they live is decided here only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask, current_app

from ..config import Settings
from ..endpoint_secrets import SecretRing

if TYPE_CHECKING:  # the store's home may move; the web layer only hands it on
    from ..store import Store

STORE = "aistats"
SETTINGS = "aistats_settings"
SECRETS = "aistats_secrets"


def init_app(app: Flask, settings: Settings, store: Store) -> None:
    """Attach ``settings`` and ``store`` to ``app`` for every request it serves."""
    app.extensions[STORE] = store
    app.extensions[SETTINGS] = settings
    app.extensions[SECRETS] = SecretRing(store.redis, settings.key_prefix, settings.webhook_secrets)


def get_store(app: Flask | None = None) -> Store:
    """Return the store of ``app`` (default: the app serving this request)."""
    return (app or current_app).extensions[STORE]


def get_settings(app: Flask | None = None) -> Settings:
    """Return the settings of ``app`` (default: the app serving this request)."""
    return (app or current_app).extensions[SETTINGS]


def get_secret_ring(app: Flask | None = None) -> SecretRing:
    """Return the webhook secrets ``app`` verifies with (configured and stored)."""
    return (app or current_app).extensions[SECRETS]
