"""Reconcile commands: ``reconcile``, ``events`` and ``replay``."""

from __future__ import annotations

import json

import click

from ..errors import AIStatsError, NotFoundError
from ..rules.timestamps import iso
from .core import CommandError, Resources, emit, json_option, pass_res


def _reconcile_now(res: Resources, batch_id: str, force: bool) -> str:
    """Reconcile one batch here and now; return the outcome."""
    from ..reconcile import reconcile_batch

    return reconcile_batch(res.store, res.client, batch_id, force=force).value


@click.command()
@click.argument("batch_id", required=False)
@click.option("--all-open", is_flag=True, help="Every batch not final yet.")
@click.option("--now", is_flag=True, help="Reconcile here and now instead of queueing for a worker.")
@click.option("--force", is_flag=True, help="With --now: retrieve even a final batch.")
@json_option
@pass_res
def reconcile(res: Resources, batch_id: str | None, all_open: bool, now: bool, force: bool) -> None:
    """Queue (or with --now, run) a reconcile of one batch or of every open one."""
    if bool(batch_id) == all_open:
        raise click.UsageError("give a BATCH_ID or --all-open (not both)")
    if force and not now:
        raise click.UsageError("--force needs --now")
    if batch_id and not now and res.store.get(batch_id) is None:
        _track_first(res, batch_id)
    ids = [batch_id] if batch_id else res.store.due_for_sweep("+inf", limit=100_000)
    results: dict[str, str] = {}
    failed = 0
    for one in ids:
        if not now:
            results[one] = res.store.request_reconcile(one, debounce=False)
            continue
        try:
            results[one] = _reconcile_now(res, one, force)
        except AIStatsError as exc:
            if batch_id:
                raise
            # With --all-open, one batch the gateway refuses must not stop the others.
            failed += 1
            results[one] = f"error: {type(exc).__name__}: {exc}"
    lines = [f"{one}  {outcome}" for one, outcome in results.items()] or ["no open batches"]
    emit(res, {"results": results}, lines)
    if failed:
        raise CommandError(f"{failed} of {len(ids)} reconciles failed")


def _track_first(res: Resources, batch_id: str) -> None:
    """Ask the gateway about a batch unknown here before queueing: a typo must not leave a not_found row."""
    from ..reconcile import track_batch

    res.store.redis.ping()
    try:
        batch = res.client.retrieve_batch(batch_id)
    except NotFoundError:
        raise CommandError(f"the gateway knows no batch {batch_id!r} for this API key; nothing queued") from None
    track_batch(res.store, batch)


def _event_row(event: dict) -> str:
    """Return one stored event as a line."""
    received = event.get("received_at")
    when = iso(received / 1000) if isinstance(received, int) else "-"
    dup = f"  duplicates={event['duplicates']}" if event.get("duplicates") else ""
    return f"{when}  {event['id']}  {event.get('type')}  attempt={event.get('attempt')}  {event.get('outcome')}{dup}"


def _require_batch(res: Resources, batch_id: str, found: list) -> None:
    """Raise unless the batch has events or a record here."""
    if not found and res.store.get(batch_id) is None:
        raise CommandError(f"no batch {batch_id!r} is known here")


@click.command()
@click.argument("batch_id")
@click.option("--payload", is_flag=True, help="Show each event's body too.")
@json_option
@pass_res
def events(res: Resources, batch_id: str, payload: bool) -> None:
    """List the webhook events received for a batch, oldest first."""
    found = res.store.events(batch_id)
    _require_batch(res, batch_id, found)
    rows = [{k: v for k, v in e.items() if payload or k not in ("body", "payload")} for e in found]
    lines = []
    for event in found:
        lines.append(_event_row(event))
        if payload:
            body = event.get("payload", event.get("body"))
            lines += ["    " + line for line in (json.dumps(body, indent=2, default=str) if body is not None
                                                   else "(body not kept: compacted or expired)").splitlines()]
    emit(res, {"batch_id": batch_id, "data": rows}, lines or [f"{batch_id}: no events"])


@click.command()
@click.argument("event_id", required=False)
@click.option("--batch", "batch_id", default=None,
              help="The batch of EVENT_ID; alone, replay every stored event of this batch.")
@json_option
@pass_res
def replay(res: Resources, event_id: str | None, batch_id: str | None) -> None:
    """Re-queue stored events: a fresh reconcile of their batch."""
    if not batch_id:
        raise click.UsageError("give --batch BATCH_ID (and optionally one EVENT_ID of it)")
    if event_id:
        if res.store.event(event_id, batch_id) is None:
            raise CommandError(f"no stored event {event_id!r} of {batch_id} "
                               "(events are kept AISTATS_EVENT_RETENTION seconds; see `events BATCH_ID`)")
        ids = [event_id]
    else:
        ids = [e["id"] for e in res.store.events(batch_id)]
        _require_batch(res, batch_id, ids)
    outcome = res.store.request_reconcile(batch_id, debounce=False)
    emit(res, {"batch_id": batch_id, "events": ids, "reconcile": outcome},
         f"{len(ids)} event(s) of {batch_id}: reconcile {outcome}")


COMMANDS = (reconcile, events, replay)
