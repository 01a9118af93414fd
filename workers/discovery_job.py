"""RQ job: poll the gateway's batch list where changes are due (aistats_hooks.discovery); every second by the cron."""

from __future__ import annotations

from aistats_hooks import converge, discovery

from aistats_hooks.effects import alerts

from . import context


def discover() -> dict[str, int]:
    """Poll the list views that are due; queue reconciles of batches unknown here or listed in another status."""
    ctx = context.current()
    converge.check(ctx.store)  # one INFO call; after a failover, what lost its commit is reconciled again
    try:
        found = discovery.poll(ctx.store, ctx.client, longest=ctx.settings.discovery_interval)
    except Exception:
        alerts.mark(ctx.store.redis, ctx.store.keys, "discovery", False)
        raise
    if found.get("polls") or found.get("errors"):  # a tick with nothing due says nothing about the gateway
        alerts.mark(ctx.store.redis, ctx.store.keys, "discovery", not found.get("errors"))
    return found
