"""Wrong tokens are throttled: per client address and overall, counted in Redis for every web process.

A wrong ``QUERY_API_TOKEN`` (a bearer token on the query API, or the
dashboard's login form) counts against the client's address and against
everyone. Once an address made ``PER_ADDRESS`` wrong guesses within
``WINDOW`` seconds, or all addresses together ``OVERALL`` (a guesser with
many addresses), every token check it reaches answers 429 with
``Retry-After`` until the window ends, the right token included: otherwise
the answer would still tell a right guess from a wrong one. Crossing a limit
is logged once, one line; counters expire with their window.

Behind a proxy every client has the proxy's address: the per-address limit
then acts as a second overall one.
"""

from __future__ import annotations

import logging

from flask import request
from redis.exceptions import RedisError

from .context import get_store

log = logging.getLogger("aistats_hooks.web")
WINDOW = 60  # seconds a failure counts for
PER_ADDRESS = 10
OVERALL = 100


def _keys() -> tuple[str, str]:
    keys = get_store().keys
    return keys.guesses("a", request.remote_addr or "unknown"), keys.guesses("all")


def throttled() -> int | None:
    """Return the seconds to wait when this client (or everyone) is throttled, else None."""
    store = get_store()
    mine, everyone = _keys()
    try:
        pipe = store.redis.pipeline(transaction=False)
        for key in (mine, everyone):
            pipe.get(key)
            pipe.ttl(key)
        mine_n, mine_ttl, all_n, all_ttl = pipe.execute()
    except RedisError:
        return None  # the token check still protects; the throttle only slows guessing
    waits = [ttl for count, ttl, cap in ((mine_n, mine_ttl, PER_ADDRESS), (all_n, all_ttl, OVERALL))
             if int(count or 0) >= cap]
    return max(max(waits), 1) if waits else None


def failed(what: str) -> None:
    """Count a wrong token of this client; log one line when that crossed a limit."""
    store = get_store()
    mine, everyone = _keys()
    try:
        pipe = store.redis.pipeline(transaction=False)
        for key in (mine, everyone):
            pipe.set(key, 0, ex=WINDOW, nx=True)  # a window starts with its first failure; INCR keeps its TTL
            pipe.incr(key)
        _, mine_n, _, all_n = pipe.execute()
    except RedisError:
        return
    if mine_n == PER_ADDRESS:
        log.warning("%s: %d wrong tokens from %s within %d s; refusing it for the rest of the minute",
                    what, PER_ADDRESS, request.remote_addr, WINDOW)
    if all_n == OVERALL:
        log.warning("%s: %d wrong tokens from all clients within %d s; refusing every token check for the rest "
                    "of the minute", what, OVERALL, WINDOW)
