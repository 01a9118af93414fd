"""The launcher's formation stops every process it started, orphans included; a second Ctrl-C forces it.

Real processes: a restarting parent whose child forks a grandchild into a
session of its own (as RQ's scheduler ends up when its worker is killed), which
holds the output pipe and, here, ignores SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from tests.test_make_run_restart import wait_for
from tests.test_make_run import ROOT, alive

pytestmark = pytest.mark.slow

# A child that forks a grandchild into its own session; the grandchild prints its pid and waits.
CHILD = textwrap.dedent("""
    import os, signal, sys, time
    if os.fork() == 0:
        os.setsid()
        if sys.argv[1] == "stubborn":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.write(1, b"grandchild %d\\n" % os.getpid())  # one write: lines never interleave
        time.sleep(600)
    os.write(1, b"child %d\\n" % os.getpid())
    time.sleep(600)
""")

DRIVER = textwrap.dedent("""
    import sys
    from honcho.printer import Printer
    from aistats_hooks.launcher.formation import Formation
    formation = Formation(Printer(sys.stdout), kill_after=float(sys.argv[2]))
    formation.add_process("keeper", "while true; do %s %s %s; done" % (sys.executable, sys.argv[1], sys.argv[3]))
    formation.add_process("other", "exec sleep 600")
    sys.exit(formation.loop())
""")


class Driven:
    def __init__(self, tmp_path, mode: str, kill_after: float) -> None:
        child = tmp_path / "child.py"
        child.write_text(CHILD)
        self.proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(child), str(kill_after), mode], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def pids(self, kind: str) -> list[int]:
        return [int(p) for p in re.findall(rf"\| {kind} (\d+)$", self.output, re.M)]

    def cleanup(self) -> None:
        """Last resort after a failed test: no process of ours may outlive it."""
        groups = [int(p) for p in re.findall(r"started \(pid=(\d+)\)", self.output)]
        for pid in groups + self.pids("grandchild") + self.pids("child") + [self.proc.pid]:
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass


def test_ctrl_c_ends_the_orphan_a_killed_child_left_holding_the_pipe(tmp_path):
    run = Driven(tmp_path, "plain", kill_after=120)
    try:
        wait_for(lambda: run.pids("child") and run.pids("grandchild"), 30, "the child and grandchild started", run)
        first_child, orphan = run.pids("child")[0], run.pids("grandchild")[0]
        os.kill(first_child, signal.SIGKILL)  # as a newcomer's test kills a worker: the shell loop restarts it
        wait_for(lambda: len(run.pids("child")) == 2, 30, "the child was restarted")
        assert alive(orphan)
        run.proc.send_signal(signal.SIGINT)
        assert run.proc.wait(timeout=60) == 130, run.output
        run.reader.join(timeout=5)
        everyone = run.pids("child") + run.pids("grandchild")
        assert len(everyone) == 4
        assert not [pid for pid in everyone if alive(pid)], run.output
        assert f"sending SIGTERM to leftover pid {orphan}" in run.output
        assert "SIGKILL" not in run.output  # every one of them heeded SIGTERM
    finally:
        run.cleanup()


def test_a_second_ctrl_c_kills_what_ignores_sigterm(tmp_path):
    run = Driven(tmp_path, "stubborn", kill_after=600)
    try:
        wait_for(lambda: run.pids("grandchild"), 30, "the grandchild started", run)
        os.kill(run.pids("child")[0], signal.SIGKILL)
        wait_for(lambda: len(run.pids("grandchild")) == 2, 30, "the child was restarted")
        run.proc.send_signal(signal.SIGINT)
        wait_for(lambda: len(re.findall("sending SIGTERM to leftover", run.output)) == 2, 30,
                 "both orphans were sent SIGTERM")
        assert run.proc.poll() is None  # they ignore it: the formation waits (up to kill_after)
        run.proc.send_signal(signal.SIGINT)
        assert run.proc.wait(timeout=60) == 130, run.output
        run.reader.join(timeout=5)
        assert "SIGINT received: stopping now (SIGKILL)" in run.output
        everyone = run.pids("child") + run.pids("grandchild")
        assert not [pid for pid in everyone if alive(pid)], run.output
    finally:
        run.cleanup()
