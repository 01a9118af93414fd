"""Transitions out: ``changes`` (the change feed, ``--follow`` to tail it) and ``handlers`` (what is registered)."""

from __future__ import annotations

import json

import click

from ..effects import changes as feed
from .. import handlers as registry
from .core import CommandError, Resources, emit, json_option, pass_res


def _row(entry: dict) -> str:
    nanos = f"  settled {entry['settled_nanos']} nanos" if entry.get("settled_nanos") is not None else ""
    return f"{entry['id']}  {entry['at']}  {entry['batch_id']}  {entry['transition']}  {entry['status']}{nanos}"


@click.command()
@click.option("--after", default=None, help="Start after this cursor (an entry id); default: the oldest kept.")
@click.option("--limit", type=click.IntRange(1, feed.MAX_PAGE), default=100, show_default=True)
@click.option("--follow", is_flag=True, help="Keep printing new transitions as they are stored (Ctrl-C stops).")
@json_option
@pass_res
def changes(res: Resources, after: str | None, limit: int, follow: bool) -> None:
    """Print the change feed: every batch transition, in order (one JSON object a line with --json)."""
    store = res.store
    try:
        rows, cursor = feed.page(store.redis, store.keys, after=after, limit=limit)
    except feed.BadCursor as exc:
        raise CommandError(str(exc)) from None
    if not follow:
        emit(res, {"data": rows, "next_cursor": cursor}, [_row(r) for r in rows] or ["no changes"])
        return
    for row in rows:
        click.echo(json.dumps(row) if res.json else _row(row))
    for row in feed.follow(store.redis, store.keys, after=cursor or "0"):
        click.echo(json.dumps(row) if res.json else _row(row))


@click.command()
@json_option
@pass_res
def handlers(res: Resources) -> None:
    """List the handlers AISTATS_HANDLERS registers, and the transitions each runs on."""
    loaded = registry.load(res.settings.handler_modules)
    rows = [{"handler": h.name, "transitions": list(h.transitions)} for h in loaded]
    emit(res, {"modules": list(res.settings.handler_modules), "data": rows},
         [f"{r['handler']}  {', '.join(r['transitions'])}" for r in rows]
         or ["no handlers (set AISTATS_HANDLERS to importable modules that use @on(...))"])


COMMANDS = (changes, handlers)
