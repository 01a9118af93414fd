"""Commands over what this service tracks: ``list``, ``billing``, ``track`` and ``forget``."""

from __future__ import annotations

from datetime import date

import click

from .. import queries
from ..rules.billing import nanos_to_usd
from ..errors import NotFoundError
from ..rules.status import BatchStatus
from .core import CommandError, Resources, emit, json_option, pass_res

_STATUSES = sorted(s.value for s in BatchStatus)


def _row(record: dict) -> str:
    """Return one record as a line: created, id, status, session, model, billed."""
    billing = record.get("billing") or {}
    billed = nanos_to_usd(int(billing.get("total_nanos") or 0)) if billing else "-"
    return (f"{record.get('created_at') or '-'}  {record.get('id')}  {record.get('status')}  "
            f"session={record.get('session_id') or '-'}  model={record.get('model') or '-'}  {billed} USD")


@click.command("list")
@click.option("--status", type=click.Choice(_STATUSES), default=None, help="Only batches with this status.")
@click.option("--session-id", default=None, help="Only batches of this session.")
@click.option("--model", default=None, help="Only batches of this model.")
@click.option("--limit", type=click.IntRange(1, queries.MAX_LIMIT), default=20, show_default=True)
@click.option("--cursor", default=None, help="The next_cursor of the previous page (--json).")
@json_option
@pass_res
def list_cmd(res: Resources, status, session_id, model, limit, cursor) -> None:
    """List tracked batches, newest first (what GET /batches answers)."""
    if cursor:
        try:
            queries.decode_cursor(cursor)
        except (ValueError, UnicodeDecodeError):
            raise click.BadParameter("not a cursor from an earlier page", param_hint="--cursor") from None
    page = queries.list_batches(res.store, status=status, session_id=session_id, model=model, limit=limit,
                                cursor=cursor)
    lines = [_row(r) for r in page["data"]] or ["no batches"]
    if page["next_cursor"]:
        lines.append(f"(more: --cursor {page['next_cursor']})")
    emit(res, page, lines)


@click.command()
@click.option("--group-by", type=click.Choice(queries.GROUPS), default="day", show_default=True)
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First UTC day (YYYY-MM-DD).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last UTC day (YYYY-MM-DD).")
@json_option
@pass_res
def billing(res: Resources, group_by: str, since, until) -> None:
    """Billed totals from the ledger (what GET /billing/summary answers); "(none)" groups batches without a value."""
    first: date | None = since.date() if since else None
    last: date | None = until.date() if until else None
    if first and last and first > last:
        raise click.BadParameter("--since is after --until")
    summary = queries.billing_summary(res.store, group_by, first, last)
    lines = [f"{g['key']}  {g['total_usd']} USD" for g in summary["groups"]]
    lines.append(f"total  {summary['total_usd']} USD")
    emit(res, summary, lines)


@click.command()
@click.argument("batch_id")
@json_option
@pass_res
def track(res: Resources, batch_id: str) -> None:
    """Start tracking a batch created elsewhere (retrieved from the gateway now), then reconcile it."""
    from ..reconcile import track_batch

    store = res.store
    store.redis.ping()  # fail before calling the gateway when Redis is down
    try:
        batch = res.client.retrieve_batch(batch_id)
    except NotFoundError:
        raise CommandError(f"the gateway knows no batch {batch_id!r} for this API key; nothing tracked") from None
    record = track_batch(store, batch)
    outcome = store.request_reconcile(batch_id, debounce=False)
    emit(res, {"record": record, "reconcile": outcome},
         f"tracking {batch_id} ({record.get('status')}); reconcile {outcome}")


@click.command()
@click.argument("batch_id")
@click.option("--force", is_flag=True, help="Also remove its settled contribution from the billing ledger.")
@json_option
@pass_res
def forget(res: Resources, batch_id: str, force: bool) -> None:
    """Remove a batch's record, stored events and index entries (not its billed amount, unless --force)."""
    done = res.store.forget(batch_id, force=force)
    if done.outcome == "unknown":
        raise CommandError(f"no batch {batch_id!r} is known here")
    if done.outcome == "busy":
        raise CommandError(f"a reconcile of {batch_id} is queued or running; try again once it has run")
    if done.outcome == "settled":
        raise CommandError(f"{batch_id} has a settled ledger contribution ({nanos_to_usd(done.nanos)} USD); "
                           "forgetting it would change billed totals: add --force to remove that too")
    removed = f"; {nanos_to_usd(done.nanos)} USD removed from the ledger" if done.nanos else ""
    emit(res, {"batch_id": batch_id, "forgotten": True, "ledger_nanos_removed": done.nanos},
         f"forgot {batch_id}{removed}")


COMMANDS = (list_cmd, billing, track, forget)
