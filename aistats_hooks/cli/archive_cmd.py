"""``archive``: keep ended batches' result files (AISTATS_ARCHIVE_URL), find the missing ones, verify them."""

from __future__ import annotations

import click

from ..effects import archiving
from .core import CommandError, Resources, emit, json_option, pass_res


@click.command()
@click.argument("batch_id", required=False)
@click.option("--missing", is_flag=True, help="Queue every ended batch that is not archived yet.")
@click.option("--verify", "verify_", is_flag=True, help="Re-hash archived files against their manifests.")
@json_option
@pass_res
def archive(res: Resources, batch_id: str | None, missing: bool, verify_: bool) -> None:
    """Queue the archive of one batch (or of every ended one not archived yet), or verify what is archived."""
    settings = res.settings
    if not settings.archive_url:
        raise CommandError("AISTATS_ARCHIVE_URL is not set: set it to file:///path or s3://bucket/prefix")
    if sum(map(bool, (batch_id, missing, verify_))) != 1:
        raise click.UsageError("give a BATCH_ID, --missing or --verify (one of them)")
    store = res.store
    if verify_:
        _verify(res)
        return
    ids = [batch_id] if batch_id else archiving.missing(store.redis, store.keys)
    if batch_id and store.get(batch_id) is None:
        raise CommandError(f"no batch {batch_id!r} is known here")
    queued = {one: archiving.enqueue(store.redis, store.keys, settings, one) for one in ids}
    lines = [f"{one}  {'queued' if done else 'already queued'}" for one, done in queued.items()]
    emit(res, {"queued": [k for k, v in queued.items() if v], "waiting": [k for k, v in queued.items() if not v]},
         lines or ["every ended batch is archived"])


def _verify(res: Resources) -> None:
    from ..effects.archive import Archive, verify

    store, settings = res.store, res.settings
    target = Archive(settings.archive_url, endpoint_url=settings.archive_endpoint_url)
    checked, problems = 0, []
    for batch_id in archiving.ended_batches(store.redis, store.keys):
        state = archiving.read_state(store.redis, store.keys, batch_id)
        if not state or state.get("status") != "archived":
            continue
        record = store.get(batch_id)
        if record is None:
            continue
        checked += 1
        problems += verify(target, record)
    emit(res, {"checked": checked, "problems": problems},
         problems + [f"{checked} archived batches checked, {len(problems)} problems"])
    if problems:
        raise CommandError(f"{len(problems)} archive problems found")


COMMANDS = [archive]
