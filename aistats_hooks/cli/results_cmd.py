"""``results BATCH_ID [-o FILE]``: a finished batch's result rows, from the gateway."""

from __future__ import annotations

import json

import click

from ..errors import NotFoundError, ResultsNotReady
from .core import CommandError, Resources, emit, json_option, pass_res


@click.command()
@click.argument("batch_id")
@click.option("-o", "--output", "path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Save the JSONL file here (written whole, 0600) instead of printing the rows.")
@json_option
@pass_res
def results(res: Resources, batch_id: str, path: str | None) -> None:
    """Print a finished batch's result rows as JSON lines (or save them with -o FILE).

    Each call spends one of the gateway's 10 results downloads per batch per
    30 minutes: save with -o to read them again.
    """
    try:
        if path:
            size = res.client.download_results(batch_id, path)
            emit(res, {"batch_id": batch_id, "path": path, "bytes": size}, f"saved {size} bytes to {path}")
            return
        with res.client.stream_results(batch_id) as rows:
            for row in rows:
                click.echo(json.dumps(row, separators=(",", ":")))
    except ResultsNotReady:
        raise CommandError(f"the results of {batch_id} are not ready: the batch has not finished "
                           f"(see `status {batch_id} --remote`)") from None
    except NotFoundError:
        raise CommandError(f"the gateway knows no batch {batch_id!r} for this API key") from None


COMMANDS = (results,)
