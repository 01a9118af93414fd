"""A handler module that counts its runs, for the tests and the chaos run (``AISTATS_HANDLERS=bench.counting_handlers``).

Every transition runs ``count``, which records one run per success in the
hash ``{AISTATS_KEY_PREFIX}:test:handler_runs`` (field ``batch|transition|change id``)
and one attempt per call in ``...:handler_attempts``. Knobs, from the
environment of the worker: ``COUNTING_FAIL_ATTEMPTS`` (raise on the first N
attempts of each run), ``COUNTING_SLEEP`` (seconds to sleep first, to be
killed mid-handler), and ``COUNTING_STARTED`` (a list key pushed to when a
run starts).
"""

from __future__ import annotations

import os
import time

from aistats_hooks.handlers import on
from aistats_hooks.rules.transitions import NAMES


def _redis():
    from workers import context

    return context.current().store.redis


def runs_key(prefix: str) -> str:
    return f"{prefix}:test:handler_runs"


def attempts_key(prefix: str) -> str:
    return f"{prefix}:test:handler_attempts"


@on(*sorted(NAMES))
def count(batch: dict, ctx) -> None:
    """Count this run; fail or sleep first when the environment asks."""
    redis = _redis()
    prefix = os.environ.get("AISTATS_KEY_PREFIX", "aistats")
    field = f"{batch['id']}|{ctx.transition}|{ctx.change_id}"
    redis.hincrby(attempts_key(prefix), field, 1)
    if os.environ.get("COUNTING_STARTED"):
        redis.rpush(os.environ["COUNTING_STARTED"], field)
    time.sleep(float(os.environ.get("COUNTING_SLEEP", "0") or 0))
    if ctx.attempt <= int(os.environ.get("COUNTING_FAIL_ATTEMPTS", "0") or 0):
        raise RuntimeError(f"failing attempt {ctx.attempt} on purpose")
    redis.hincrby(runs_key(prefix), field, 1)
