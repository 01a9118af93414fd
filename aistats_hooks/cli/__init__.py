"""The operator's command line: ``python -m aistats_hooks <command>``.

Commands talk to the same Redis as the service (``REDIS_URL``, or the
embedded one under ``AISTATS_DATA_DIR``) and to the gateway through the
project's SDK. Every setting comes from the environment, completed as the
Procfile's processes get it: ``.env``, then a running ``make run``'s session
file (see ``envfiles``).

Errors print one line on stderr and exit non-zero: 2 for a configuration
error, 1 for anything else (a gateway error, a usage error, Redis down).
``--json`` (before or after the command) prints machine-readable output; with
it, an error is one JSON object on stderr, ``{"error": {"message", "exit_code"}}``
(stdout stays empty), with the same exit status.

One module per family of commands: ``batches`` (create-batch, upload,
status, cancel), ``records_cmd`` (list, billing, track, forget),
``results_cmd``, ``failed_cmd`` (failed, requeue), ``endpoints`` (endpoints create/list/test/delete,
rotate-secret), ``reconcile`` (reconcile, events, replay), ``trigger`` and
``config_cmd``; ``core`` holds what they share.
"""

from __future__ import annotations

import os
import sys

import click

from .. import __version__, logs
from . import (alerts_cmd, envfiles, archive_cmd, batches, config_cmd, endpoints, failed_cmd, forwarding_cmd, reconcile_cmd, records_cmd, results_cmd,
               transitions_cmd, trigger)
from .core import HooksCLI, Resources


@click.group(cls=HooksCLI, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="aistats-hooks", message="%(prog)s %(version)s")
@click.option("--json", "json_output", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def cli(ctx: click.Context, json_output: bool) -> None:
    """Operate aistats-hooks: create and inspect batches, replay and trigger webhooks.

    Settings come from the environment (see .env.example).
    """
    res = ctx.ensure_object(Resources)
    res.json = res.json or json_output
    ctx.call_on_close(res.close)
    # Library warnings go to stderr as JSON lines; INFO chatter (httpx) stays out
    # of the CLI's output unless LOG_LEVEL asks for it.
    level = logs.level_from_env() if os.environ.get("LOG_LEVEL", "").strip() else "WARNING"
    logs.configure(level, force=False)


for _module in (batches, records_cmd, results_cmd, endpoints, reconcile_cmd, failed_cmd, trigger, config_cmd,
                transitions_cmd, forwarding_cmd, archive_cmd, alerts_cmd):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``.env`` and a running ``make run``'s session file applied; return its exit status."""
    for notice in envfiles.load():
        click.echo(f"aistats-hooks: {notice}", err=True)
    return cli.main(args=argv, prog_name="python -m aistats_hooks", standalone_mode=False)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
