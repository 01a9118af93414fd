"""RQ job: poll the gateway's batch list where changes are due (aistats_hooks.discovery); every second by the cron."""

from __future__ import annotations

from aistats_hooks import discovery

from . import context


def discover() -> dict[str, int]:
    """Poll the list views that are due; queue reconciles of batches unknown here or listed in another status."""
    ctx = context.current()
    return discovery.poll(ctx.store, ctx.client, longest=ctx.settings.discovery_interval)
