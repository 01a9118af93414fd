"""Forwarding: ``forwarding`` (messages and their attempts; ``enable URL``) and ``redeliver``."""

from __future__ import annotations

import click

from .. import forwarding as fwd
from ..timestamps import parse_time
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
    human += [f"disabled: {url.split('?', 1)[0]}  ({why})" for url, why in off.items()]
    emit(res, {"data": rows, "disabled": [u.split("?", 1)[0] for u in off],
               "destinations": [u.split("?", 1)[0] for u in res.settings.forward_urls]}, human)


@forwarding.command()
@click.argument("url")
@json_option
@pass_res
def enable(res: Resources, url: str) -> None:
    """Send to URL again after it answered 410 Gone (then `redeliver --since` what it missed)."""
    if not fwd.enable(res.store.redis, res.store.keys, url):
        raise CommandError(f"{url.split('?', 1)[0]} is not disabled")
    emit(res, {"enabled": url.split("?", 1)[0]}, f"enabled {url.split('?', 1)[0]}")


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
