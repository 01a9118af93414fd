"""``python -m aistats_hooks.launcher.keep -- CMD...``: restart CMD when it exits with an error.

Stock ``rq worker`` and ``rq cron`` exit when Redis goes away, and honcho
stops every process when one exits; a PaaS or systemd would restart them, so
``make run`` wraps them in this small supervisor instead. A clean exit (0),
a configuration error (2) or a stop signal ends it; any other exit restarts
CMD after a pause that grows to ``MAX_PAUSE`` seconds. Whatever an ended CMD
left behind in its process group (a killed worker's scheduler) is stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from ..config import EXIT_CONFIG

MAX_PAUSE = 10.0
FINAL_CODES = (0, EXIT_CONFIG)  # done, or a setting to fix: restarting would not help


def supervise(argv: list[str], *, pause: float = 1.0) -> int:
    """Run ``argv`` until it exits cleanly or a stop signal arrives; return its last exit code."""
    stopping = False
    child: subprocess.Popen | None = None

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    while True:
        # Its own session: a stop signal reaches it once, from here, never twice
        # (honcho signals our group; a second SIGTERM would make RQ cold-stop mid-job).
        child = subprocess.Popen(argv, start_new_session=True)
        code = child.wait()
        _end_leftovers(child.pid)
        if stopping or code in FINAL_CODES:
            return code
        print(f"aistats-hooks: {argv[0]} exited with {code}; restarting in {pause:g}s", file=sys.stderr, flush=True)
        time.sleep(pause)
        if stopping:
            return code
        pause = min(pause * 2, MAX_PAUSE)


def _end_leftovers(pgid: int) -> None:
    """SIGTERM what the ended child left in its group: a killed ``rq worker``'s scheduler child.

    Left alone it would keep the scheduler lock from the restarted worker and
    outlive the stack (see ``aistats_hooks.launcher.formation``).
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Parse ``-- CMD...`` and supervise it."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("aistats-hooks: usage: python -m aistats_hooks.launcher.keep -- CMD [ARGS...]", file=sys.stderr)
        return 2
    return supervise(args)


if __name__ == "__main__":
    sys.exit(main())
