"""The per-process resources a job needs, built once on first use.

Nothing is created at import time: the worker process imports this module,
and the first job builds settings, the Redis client, the store and the SDK
client from the environment, then reuses them for every later job.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from aistats_hooks import handlers

from aistats_hooks.effects import archiving, dispatch, forwarding
from aistats_hooks.config import Settings
from aistats_hooks.keys import Keys
from aistats_hooks.redis_conn import connect
from aistats_hooks.sdk import AIStats
from aistats_hooks.store.budget import Budget
from aistats_hooks.upstream_budget import BudgetTransport
from aistats_hooks.store import Store


@dataclass(frozen=True)
class Context:
    """What a job works with."""

    settings: Settings
    store: Store
    client: AIStats


def build(settings: Settings) -> Context:
    """Build a context for ``settings`` (importing its handler modules: jobs may run them)."""
    redis = connect(settings)
    if handlers.load(settings.handler_modules):
        # From now on every transition reaches the handlers (earlier ones are not replayed to them).
        dispatch.ensure_group(redis, Keys(settings.key_prefix))
    if settings.forward_urls:  # forwarding starts with the transitions from now on
        forwarding.ensure_group(redis, Keys(settings.key_prefix))
    if settings.archive_url:  # archiving too starts with the batches that end from now on
        archiving.ensure_group(redis, Keys(settings.key_prefix))
    # Every call waits for the budget shared by all processes (AISTATS_UPSTREAM_RPS, a 429's pause).
    connections = max(20, settings.reconcile_concurrency)
    transport = BudgetTransport(Budget(redis, Keys(settings.key_prefix)), settings.upstream_rps,
                                max_connections=connections)
    client = AIStats(settings.require_api_key(), settings.base_url, timeout=settings.upstream_timeout,
                     transport=transport, max_connections=connections)
    return Context(settings=settings, store=Store(redis, settings), client=client)


@functools.lru_cache(maxsize=1)
def current() -> Context:
    """Return this process's context, built from the environment on first use."""
    return build(Settings.from_env())
