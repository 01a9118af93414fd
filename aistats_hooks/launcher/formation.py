"""The Procfile's processes of a ``make run``, started together and stopped together: every one of them.

honcho's ``Manager`` (used before) counted a process as stopped only when its
output pipe closed. A process that leaves its parent's group and outlives its
parent keeps that pipe open: RQ's scheduler child of a worker that was killed
(and restarted by ``keep``) did, and Ctrl-C then never finished, printing
"sending SIGKILL" to a group that no longer existed, forever.

So this formation:

- runs each process in its own session, as honcho does, and prints its output
  through honcho's ``Printer`` (same prefixes, same "started (pid=N)" lines);
- counts a process as stopped when it has exited, whoever still holds its pipe;
- makes the launcher the *child subreaper* (Linux ``prctl``): a process
  orphaned anywhere below it is re-parented to the launcher instead of init,
  so every process the stack started stays findable under the launcher's pid;
- stops in two steps: SIGTERM to each process's group and to every orphan
  outside those groups (once: a second SIGTERM makes RQ cold-stop mid-job,
  and a ``keep`` whose shell ended would forward it twice), then SIGKILL to every
  descendant still alive after ``KILL_AFTER`` seconds, or at once on a second
  Ctrl-C. Processes listed as ``spared`` (the sandbox, which the launcher stops
  after the workers) are left alone.
"""

from __future__ import annotations

import datetime
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable

KILL_AFTER = 7.0  # seconds after the first stop signal; the sandbox and Redis stop after, well within 10 s
PR_SET_CHILD_SUBREAPER = 36
SIGNAL_NAMES = {signal.SIGINT: ("SIGINT", 130), signal.SIGTERM: ("SIGTERM", 143)}


def become_subreaper() -> bool:
    """Make orphaned descendants this process's children (Linux); tell whether it worked."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def process_table() -> dict[int, tuple[int, str]]:
    """Return ``{pid: (parent pid, state letter)}`` of every process, from /proc ({} without /proc)."""
    table: dict[int, tuple[int, str]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            table[int(entry)] = (int(fields[1]), fields[0])
        except (OSError, IndexError, ValueError):
            continue
    return table


def descendants(root: int, table: dict[int, tuple[int, str]], spared: Iterable[int] = ()) -> set[int]:
    """Return every process below ``root`` in ``table``, leaving out ``spared`` pids and what is below them."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _state) in table.items():
        children.setdefault(parent, []).append(pid)
    skip, found, frontier = set(spared), set(), [root]
    while frontier:
        pid = frontier.pop()
        for child in children.get(pid, ()):
            if child not in skip and child not in found:
                found.add(child)
                frontier.append(child)
    return found


def describe(pid: int) -> str:
    """Return a short command line of ``pid`` for a message."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            words = handle.read().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    return " ".join(w for w in words if w)[:80] or "?"


class Formation:
    """Named shell commands run side by side until one exits or a stop signal arrives, then all stopped."""

    def __init__(self, printer, *, spared: Iterable[int] = (), kill_after: float = KILL_AFTER) -> None:
        from honcho.colour import get_colours

        self.printer = printer
        self.spared = set(spared)
        self.kill_after = kill_after
        self.commands: dict[str, tuple[str, dict[str, str], str | None]] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.lines: queue.Queue = queue.Queue()
        self.readers: list[threading.Thread] = []
        self.colours = get_colours()
        self.colour: dict[str, str] = {}
        self.returncode: int | None = None
        self.signals: list[int] = []
        self.stopping_since: float | None = None
        self.forced = False
        self.termed: set[int] = set()
        self.killed: set[int] = set()
        self.next_scan = 0.0

    def add_process(self, name: str, command: str, env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        """Add a process, started by ``loop``."""
        self.commands[name] = (command, dict(os.environ if env is None else env), cwd)
        self.colour[name] = next(self.colours)
        self.printer.width = max(self.printer.width, len(name), len("system"))

    def loop(self) -> int:
        """Start every process, print their output, stop them all; return the exit status (130/143 on a signal)."""
        previous = {sig: signal.signal(sig, self._signalled) for sig in SIGNAL_NAMES}
        become_subreaper()
        try:
            for name, (command, env, cwd) in self.commands.items():
                self._start(name, command, env, cwd)
            while not self._finished():
                self._print_lines(timeout=0.1)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for proc in self.procs.values():  # only after an unexpected error: nothing may outlive the launcher
                if proc.poll() is None:
                    _signal_group(proc.pid, signal.SIGKILL)
            for reader in self.readers:
                reader.join(timeout=1)
            self._print_lines(timeout=0)
        return self.returncode or 0

    def _signalled(self, signum: int, frame) -> None:
        """Note the signal; the loop acts on it (nothing printed from a signal handler)."""
        self.signals.append(signum)

    def _start(self, name: str, command: str, env: dict[str, str], cwd: str | None) -> None:
        proc = subprocess.Popen(command, shell=True, env=env, cwd=cwd, start_new_session=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        reader = threading.Thread(target=self._read, args=(name, proc.stdout), daemon=True, name=f"read-{name}")
        reader.start()
        self.readers.append(reader)
        self._say(f"{name} started (pid={proc.pid})")

    def _read(self, name: str, stream) -> None:
        for line in iter(stream.readline, b""):
            self.lines.put((name, line))
        stream.close()

    def _print_lines(self, timeout: float) -> None:
        from honcho.printer import Message

        try:
            while True:
                name, line = self.lines.get(timeout=timeout)
                self.printer.write(Message("line", line, datetime.datetime.now(), name, self.colour.get(name)))
                timeout = 0
        except queue.Empty:
            pass

    def _say(self, text: str) -> None:
        from honcho.printer import Message

        self.printer.write(Message("line", text + "\n", datetime.datetime.now(), "system", None))

    def _finished(self) -> bool:
        """Act on signals and exits; tell whether every process and every descendant is gone."""
        while self.signals:
            name, code = SIGNAL_NAMES[self.signals.pop(0)]
            self._say(f"{name} received" + (": stopping now (SIGKILL)" if self.stopping_since is not None else ""))
            if self.stopping_since is not None:
                self.forced = True
            else:
                self.returncode = code if self.returncode is None else self.returncode
                self._stop()
        for name, proc in self.procs.items():
            if proc.returncode is None and proc.poll() is not None:
                self._say(f"{name} stopped (rc={proc.returncode})")
                if self.returncode is None:
                    self.returncode = proc.returncode
                if self.stopping_since is None:
                    self._stop()
        if self.stopping_since is None:
            if time.monotonic() >= self.next_scan:  # while running, orphans are only reaped: once a second
                self.next_scan = time.monotonic() + 1.0
                self._reap_orphans(process_table())
            return False
        table = process_table()
        self._reap_orphans(table)
        left = {p for p in descendants(os.getpid(), table, self.spared) if table[p][1] != "Z"}
        running = [proc for proc in self.procs.values() if proc.returncode is None]
        if not left and not running:
            return True
        if self.forced or time.monotonic() - self.stopping_since > self.kill_after:
            self._kill(left)
        else:
            self._terminate_orphans(table)
        return False

    def _stop(self) -> None:
        """First step: SIGTERM to each process's group, and to every orphan."""
        self.stopping_since = time.monotonic()
        for name, proc in self.procs.items():
            if proc.returncode is None:
                self._say(f"sending SIGTERM to {name} (pid {proc.pid})")
                _signal_group(proc.pid, signal.SIGTERM)
        self._terminate_orphans(process_table())

    def _orphans(self, table: dict[int, tuple[int, str]]) -> list[int]:
        """Processes re-parented to the launcher: left behind by a process that ended."""
        ours = {proc.pid for proc in self.procs.values()} | self.spared
        me = os.getpid()
        return [pid for pid, (parent, state) in table.items() if parent == me and pid not in ours and state != "Z"]

    def _terminate_orphans(self, table: dict[int, tuple[int, str]]) -> None:
        """SIGTERM each orphan once, unless its group had it already (a shell's child: ``keep`` forwards it)."""
        groups = {proc.pid for proc in self.procs.values()}
        for pid in self._orphans(table):
            if pid not in self.termed and _group(pid) not in groups:
                self.termed.add(pid)
                self._say(f"sending SIGTERM to leftover pid {pid} ({describe(pid)})")
                _signal(pid, signal.SIGTERM)

    def _kill(self, left: set[int]) -> None:
        """Second step: SIGKILL to every process group of the formation and every descendant still alive."""
        new = left - self.killed
        if new:
            self._say(f"sending SIGKILL to {len(new)} process(es) still running: "
                      + ", ".join(f"{pid} ({describe(pid)})" for pid in sorted(new)[:6]))
        for proc in self.procs.values():
            if proc.returncode is None:
                _signal_group(proc.pid, signal.SIGKILL)
        for pid in left:
            _signal(pid, signal.SIGKILL)
        self.killed |= left

    def _reap_orphans(self, table: dict[int, tuple[int, str]]) -> None:
        """Collect the exit status of ended orphans (re-parented here), so no zombie stays."""
        ours = {proc.pid for proc in self.procs.values()} | self.spared
        me = os.getpid()
        for pid, (parent, state) in table.items():
            if parent == me and state == "Z" and pid not in ours:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
