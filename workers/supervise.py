"""Keep one RQ command running through Redis outages: ``python -m workers.supervise rq cron ...``.

``rq cron`` exits on the first Redis error (a failover, a restart, a blink),
and ``rq worker`` quits on some of them. Under honcho, one process that exits
stops the whole formation, so the gateway would meet a refused connection
instead of the web process's 503. This wrapper runs the stock RQ command as
its child, unchanged, and starts it again after it exits with an error,
waiting 1, 2, 4 ... up to 30 seconds between tries (reset after a minute of
running), with one JSON log line per restart.

It does not restart:
- a child that exited 0 (it finished: ``--burst``, a stop it was asked for);
- a child that exited 2: the settings module refused the configuration, and
  only a person can fix that (the child printed the one line naming it);
- after SIGTERM or SIGINT: the signal is passed on to the child, whose exit
  status becomes this process's.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

CONFIG_ERROR = 2
FIRST_WAIT, MAX_WAIT = 1.0, 30.0
# A child that ran this long before failing had been healthy: start again from the short wait.
HEALTHY_AFTER = 60.0


def log(level: str, message: str, **fields) -> None:
    """One JSON line on stderr, in the shape of the service's other log lines."""
    line = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": level.lower(), "logger": "workers.supervise", "msg": message, **fields}
    print(json.dumps(line), file=sys.stderr, flush=True)


class Supervisor:
    """Run ``argv`` until it succeeds, is refused its configuration, or we are asked to stop."""

    def __init__(self, argv: list[str], *, sleep=time.sleep) -> None:
        self.argv = argv
        self.child: subprocess.Popen | None = None
        self.stopping = False
        self.sleep = sleep

    def stop(self, signum: int, _frame=None) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def run(self) -> int:
        wait = FIRST_WAIT
        name = " ".join(self.argv[:2])
        while True:
            started = time.monotonic()
            self.child = subprocess.Popen(self.argv)
            code = self.child.wait()
            if self.stopping or code == 0:
                return code
            if code == CONFIG_ERROR:
                return code  # the child printed the one line naming the setting; nothing to add
            if time.monotonic() - started >= HEALTHY_AFTER:
                wait = FIRST_WAIT
            log("WARNING", f"{name} exited with {code}; restarting in {wait:g} s (Redis unreachable or failing over?)",
                exit_code=code, restart_in=wait)
            deadline = time.monotonic() + wait
            while not self.stopping and time.monotonic() < deadline:
                self.sleep(min(0.2, deadline - time.monotonic()))
            if self.stopping:
                return code
            wait = min(wait * 2, MAX_WAIT)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m workers.supervise COMMAND [ARGS...]", file=sys.stderr)
        return CONFIG_ERROR
    supervisor = Supervisor(args)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, supervisor.stop)
    try:
        return supervisor.run()
    except FileNotFoundError:
        print(f"workers.supervise: command not found: {args[0]} (is .venv/bin on PATH?)", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
