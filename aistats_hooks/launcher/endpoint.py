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


def create_endpoint(env: Mapping[str, str], *, timeout: float = 30.0) -> str:
    """Create the stack's endpoint in the gateway at ``AISTATS_BASE_URL``, store its secret; return its id."""
    from redis import Redis

    from ..sdk import AIStats

    url = env["PUBLIC_BASE_URL"].rstrip("/") + WEBHOOK_PATH
    with AIStats(env["AISTATS_API_KEY"], env["AISTATS_BASE_URL"], timeout=5) as client:
        endpoint = _when_up(lambda: client.create_webhook_endpoint(url, events=list(DEFAULT_EVENTS),
                                                                   name="make run"), timeout)
    redis = Redis.from_url(env["REDIS_URL"])
    try:
        endpoint_secrets.add(redis, env.get("AISTATS_KEY_PREFIX", "").strip() or "aistats",
                             endpoint["signing_secret"], str(endpoint["id"]))
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
