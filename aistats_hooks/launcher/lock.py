"""One ``make run`` per data folder: ``.data/launcher.lock`` names the owner's pid.

A second launcher on the same ``.data`` would attach to the first one's
embedded Redis, overwrite its session file and stop that Redis on exit. The
lock is an ``flock`` on the file, which the kernel releases when the owner
dies, so a crashed run never leaves a stale lock behind; the pid written in
it is only for the message (and is checked for liveness, so the message
never blames a dead process).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..cli.envfiles import LOCK_FILE, held  # noqa: F401  (held: the CLI asks whether a run is live)


class Locked(Exception):
    """Another live launcher owns the data folder."""

    def __init__(self, pid: int | None, data_dir: Path) -> None:
        owner = f"pid {pid}" if pid else "another process"
        super().__init__(f"another make run ({owner}) owns {data_dir}: stop it first, "
                         "or set AISTATS_DATA_DIR to another folder")
        self.pid = pid


def acquire(data_dir: Path) -> int:
    """Lock ``data_dir`` for this process; return the open descriptor (keep it open). Raise ``Locked``."""
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _owner(fd)
        os.close(fd)
        raise Locked(pid, data_dir) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _owner(fd: int) -> int | None:
    """Return the pid written in the lock file, if that process is alive."""
    try:
        pid = int(os.pread(fd, 32, 0).decode().strip() or 0)
        if pid > 0:
            os.kill(pid, 0)
            return pid
    except (ValueError, ProcessLookupError):
        return None
    except PermissionError:  # alive, another user's
        return pid
    return None

