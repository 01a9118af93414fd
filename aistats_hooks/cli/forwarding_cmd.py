"""Forwarding: ``forwarding`` (messages and their attempts; ``disable URL``, ``enable URL``) and ``redeliver``.

Destinations are shown masked (``urls.masked``: no password, token or query
value); ``disable`` and ``enable`` take a URL as configured or as shown.
"""

from __future__ import annotations

import time

import click

from ..effects import forwarding as fwd
from ..rules.timestamps import iso
from ..urls import masked
from ..rules.timestamps import parse_time
from .core import CommandError, Resources, emit, json_option, pass_res


def _row(message: dict) -> str:
    last = message["attempts"][-1] if message["attempts"] else {}
    result = last.get("status_code") or last.get("error") or "-"
    return (f"{message['id']}  {message['batch_id']}  {message['transition']}  {message['status']}  "
            f"attempts {len(message['attempts'])}  last {result}  {message['destination']}")


@click.group(invoke_without_command=True)
@click.option("--failed", is_flag=True, help="Only messages that failed for good.")
@click.option("--batch", "batch_id", default=None, help="Only this batch's messages.")
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True)
@json_option
@pass_res
@click.pass_context
def forwarding(ctx: click.Context, res: Resources, failed: bool, batch_id: str | None, limit: int) -> None:
    """List forwarded messages (oldest first) and disabled destinations."""
    if ctx.invoked_subcommand is not None:
        return
    store = res.store
    rows = [fwd.public(m) for m in fwd.messages(store.redis, store.keys, batch_id=batch_id,
                                                   status="failed" if failed else None, limit=limit)]
    off = fwd.disabled(store.redis, store.keys)
    human = [_row(r) for r in rows] or ["no messages"]
    human += [f"disabled: {masked(url)}  ({why})" for url, why in off.items()]
    emit(res, {"data": rows, "disabled": [masked(u) for u in off],
               "destinations": [masked(u) for u in res.settings.forward_urls]}, human)


@forwarding.command()
@click.argument("url")
@json_option
@pass_res
def disable(res: Resources, url: str) -> None:
    """Stop sending to URL now: its next attempts are marked disabled, without a request (`enable URL` undoes it)."""
    store = res.store
    target = fwd.resolve(url, res.settings)
    if target is None:
        raise CommandError(f"{masked(url)} is not a destination in AISTATS_FORWARD_URLS")
    fwd.disable(store.redis, store.keys, target, f"disabled with `forwarding disable` at {iso(time.time())}")
    emit(res, {"disabled": masked(target)}, f"disabled {masked(target)}")


@forwarding.command()
@click.argument("url")
@json_option
@pass_res
def enable(res: Resources, url: str) -> None:
    """Send to URL again after a 410 Gone or `disable` (then `redeliver --since` what it missed)."""
    store = res.store
    target = fwd.resolve(url, res.settings, list(fwd.disabled(store.redis, store.keys)))
    if target is None or not fwd.enable(store.redis, store.keys, target):
        raise CommandError(f"{masked(url)} is not disabled")
    emit(res, {"enabled": masked(target)}, f"enabled {masked(target)}")


@click.command()
@click.argument("message_id", required=False)
@click.option("--batch", "batch_id", default=None, help="Every message of this batch.")
@click.option("--since", default=None, help="Every message created since TIME (ISO-8601 or unix seconds).")
@json_option
@pass_res
def redeliver(res: Resources, message_id: str | None, batch_id: str | None, since: str | None) -> None:
    """Send forwarded messages again: MESSAGE_ID, or --batch ID, or --since TIME (same webhook-id)."""
    if sum(x is not None for x in (message_id, batch_id, since)) != 1:
        raise click.UsageError("give exactly one of MESSAGE_ID, --batch ID, --since TIME")
    store = res.store
    if message_id:
        ids = [message_id]
    else:
        since_s = parse_time(since) if since else 0.0
        if since is not None and since_s is None:
            raise click.BadParameter(f"{since!r} is not a time (ISO-8601 or unix seconds)", param_hint="--since")
        ids = [m["id"] for m in fwd.messages(store.redis, store.keys, batch_id=batch_id,
                                             since_ms=int((since_s or 0) * 1000), limit=100_000)]
    sent = [mid for mid in ids if fwd.redeliver(store.redis, store.keys, store.queue, mid)]
    if message_id and not sent:
        raise CommandError(f"no message {message_id} (unknown, or older than AISTATS_EVENT_RETENTION)")
    emit(res, {"redelivered": sent}, f"redelivering {len(sent)} message(s)")


COMMANDS = (forwarding, redeliver)
