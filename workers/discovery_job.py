"""RQ job: poll the gateway's batch list for batches we do not know or whose state moved (aistats_hooks.discovery)."""

from __future__ import annotations

from aistats_hooks import discovery

from . import context


def discover() -> dict[str, int]:
    """Read the list's first page per status group; queue reconciles of unknown or changed batches."""
    ctx = context.current()
    return discovery.poll(ctx.store, ctx.client)
