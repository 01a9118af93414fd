"""Redis through Sentinel: find the primary by asking Sentinel, follow a failover without a restart.

With ``REDIS_SENTINELS`` set, every process builds its client with redis-py's
``Sentinel(...).master_for(service)``. That client asks a Sentinel for the
primary's address whenever it opens a connection, and drops a connection
that fails (or that finds its server demoted to a replica: READONLY), so
after Sentinel promotes a replica the next command reaches the new primary.
During the switch commands raise ``ConnectionError``: the web answers 503
(the gateway retries) and RQ workers retry their loop.

``REDIS_URL``, when also set, supplies what Sentinel does not know: the
data nodes' ACL user and password, the database number, TLS (``rediss://``)
and client options in its query string. Its host and port are ignored.
RQ reads the same through its own ``SENTINEL`` setting (``rq_sentinel``).
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.connection import parse_url
from redis.sentinel import Sentinel

from .config import Settings

# The client options connect() gives a plain REDIS_URL client too.
DEFAULTS = {"socket_timeout": 10, "socket_connect_timeout": 5, "health_check_interval": 30}
# Sentinels answer one small command; a dead one must not hold a connect for long.
SENTINEL_TIMEOUT = 1.0
_URL_ONLY = ("host", "port", "path", "connection_class", "unix_socket_path")


def data_node_options(settings: Settings) -> dict[str, Any]:
    """Return the data nodes' connection options from ``REDIS_URL`` (credentials, db, TLS), no address."""
    if not settings.redis_url:
        return {}
    options = {k: v for k, v in parse_url(settings.redis_url).items() if k not in _URL_ONLY}
    if settings.redis_url.startswith("rediss://"):
        # master_for picks its TLS connection class from this flag (SentinelManagedSSLConnection).
        options["ssl"] = True
    return options


def sentinel_options(settings: Settings) -> dict[str, Any]:
    """Return the options of connections to the Sentinels themselves."""
    options: dict[str, Any] = {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT}
    if settings.redis_sentinel_password:
        options["password"] = settings.redis_sentinel_password
    if settings.redis_url and settings.redis_url.startswith("rediss://"):
        options["ssl"] = True  # a TLS deployment runs its Sentinels over TLS too
    return options


def master_client(settings: Settings, **overrides: Any) -> Redis:
    """Return a client of the current primary of ``settings.redis_sentinel_master``, following failovers."""
    options = {**DEFAULTS, **data_node_options(settings), **overrides}
    sentinel = Sentinel(list(settings.redis_sentinels), sentinel_kwargs=sentinel_options(settings), **options)
    return sentinel.master_for(settings.redis_sentinel_master, redis_class=Redis, **options)


def rq_sentinel(settings: Settings) -> dict[str, Any]:
    """Return RQ's ``SENTINEL`` setting (read by ``rq worker -c`` / ``rq cron -c``) for ``settings``."""
    node = data_node_options(settings)
    return {
        "INSTANCES": [list(pair) for pair in settings.redis_sentinels],
        "MASTER_NAME": settings.redis_sentinel_master,
        "DB": node.pop("db", 0),
        "USERNAME": node.pop("username", None),
        "PASSWORD": node.pop("password", None),
        "SOCKET_TIMEOUT": node.pop("socket_timeout", DEFAULTS["socket_timeout"]),
        "SSL": node.pop("ssl", False),
        "CONNECTION_KWARGS": {"socket_connect_timeout": DEFAULTS["socket_connect_timeout"],
                              "health_check_interval": DEFAULTS["health_check_interval"], **node},
        "SENTINEL_KWARGS": sentinel_options(settings),
    }


def replication(redis: Redis) -> dict[str, Any]:
    """Return the server's role and how many replicas are connected (INFO replication)."""
    info = redis.info("replication")
    return {"role": info.get("role"), "connected": int(info.get("connected_slaves", 0) or 0)}
