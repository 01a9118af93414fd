"""The launcher's own stdout and stderr, safe to lose: ``make run | head -5`` must not half-stop the stack.

When the reader of a pipe goes away, writes fail with EPIPE. honcho prints
every child's lines through the launcher, so an unhandled BrokenPipeError
there used to end the launcher's loop and stop Redis and the sandbox while
the web, worker and cron processes ran on. ``SafeStream`` swallows that
error and writes nowhere from then on: the stack keeps running, silently,
and Ctrl-C or SIGTERM still stops all of it.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import TextIO


class SafeStream:
    """A text stream that turns a vanished reader into silence."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.closed_by_reader = False

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            self._lost(exc)
        return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            self._lost(exc)

    def _lost(self, exc: OSError) -> None:
        """Point the file descriptor at /dev/null: later writes, and the flush at exit, go nowhere."""
        if exc.errno not in (errno.EPIPE, errno.EIO, errno.EBADF):
            raise exc
        self.closed_by_reader = True
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, self._stream.fileno())
        finally:
            os.close(null)
        try:
            self._stream.flush()  # what was buffered now drains into /dev/null
        except OSError:
            pass

    def isatty(self) -> bool:
        return not self.closed_by_reader and self._stream.isatty()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def protect() -> None:
    """Make ``sys.stdout`` and ``sys.stderr`` safe to lose (idempotent)."""
    if not isinstance(sys.stdout, SafeStream):
        sys.stdout = SafeStream(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, SafeStream):
        sys.stderr = SafeStream(sys.stderr)  # type: ignore[assignment]
