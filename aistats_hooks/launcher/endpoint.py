"""The managed webhook endpoint of a ``make run`` stack, created in the sandbox at start.

The gateway delivers batch webhooks only to endpoints it manages, so the
stack creates one pointing at its own receiver, as `endpoints create` would:
the signing secret goes into Redis (where the web processes verify with it),
the id into the environment every process and the CLI session file get.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from .. import endpoint_secrets
from ..cli.core import WEBHOOK_PATH
from ..cli.endpoints import DEFAULT_EVENTS
from ..errors import AIStatsError, UpstreamUnavailable


def ensure_endpoint(env: Mapping[str, str], previous: str | None = None, *, timeout: float = 30.0) -> tuple[str, bool]:
    """Return the stack's endpoint id and whether it was reused.

    ``previous`` (the id a former ``make run`` kept in ``.data``) is reused when
    the gateway still has it, active, pointing at this stack's URL, and Redis
    still holds its signing secret; otherwise a new endpoint is created.
    """
    from ..sdk import AIStats

    url = env["PUBLIC_BASE_URL"].rstrip("/") + WEBHOOK_PATH
    with AIStats(env["AISTATS_MANAGEMENT_KEY"], env["AISTATS_BASE_URL"], timeout=5) as client:
        if previous and _reusable(env, client, previous, url, timeout):
            return previous, True
        return create_endpoint(env, client=client, timeout=timeout), False


def _reusable(env: Mapping[str, str], client, endpoint_id: str, url: str, timeout: float) -> bool:
    """Say whether the kept endpoint can serve this stack as it is."""
    try:
        endpoint = _when_up(lambda: client.get_webhook_endpoint(endpoint_id), timeout)
    except AIStatsError:  # 404: the sandbox's state was reset
        return False
    if endpoint.get("url") != url or endpoint.get("status", "active") != "active":
        return False
    redis = _redis(env)
    try:
        stored = endpoint_secrets.entries(redis, _prefix(env)).values()
    finally:
        redis.close()
    return any(e.get("endpoint_id") == endpoint_id and e.get("retire_at") is None for e in stored)


def _redis(env: Mapping[str, str]):
    """The stack's Redis as every process finds it (REDIS_URL, or through REDIS_SENTINELS)."""
    from ..config import Settings
    from ..redis_conn import connect

    return connect(Settings.from_env(env))


def _prefix(env: Mapping[str, str]) -> str:
    return env.get("AISTATS_KEY_PREFIX", "").strip() or "aistats"


def create_endpoint(env: Mapping[str, str], *, client=None, timeout: float = 30.0) -> str:
    """Create the stack's endpoint in the gateway at ``AISTATS_BASE_URL``, store its secret; return its id."""
    from ..sdk import AIStats

    url = env["PUBLIC_BASE_URL"].rstrip("/") + WEBHOOK_PATH
    if client is None:
        with AIStats(env["AISTATS_MANAGEMENT_KEY"], env["AISTATS_BASE_URL"], timeout=5) as own:
            return create_endpoint(env, client=own, timeout=timeout)
    endpoint = _when_up(lambda: client.create_webhook_endpoint(url, events=list(DEFAULT_EVENTS), name="make run"),
                        timeout)
    redis = _redis(env)
    try:
        endpoint_secrets.add(redis, _prefix(env), endpoint["signing_secret"], str(endpoint["id"]))
    finally:
        redis.close()
    return str(endpoint["id"])


def _when_up(call, timeout: float):
    """Run ``call`` until the gateway (a sandbox just started) answers; re-raise its last error."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except UpstreamUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        except AIStatsError:
            raise
