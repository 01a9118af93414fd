"""make run's supervisor: restart worker and cron on errors, never on a clean stop or a bad setting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from aistats_hooks.launcher import keep

# Every test here starts real child processes.
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _own_signal_handlers():
    """``supervise`` installs SIGINT/SIGTERM handlers; give pytest its own back (Ctrl-C must still stop it)."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)

CHILD = """
import pathlib, sys
runs = pathlib.Path(sys.argv[1])
count = int(runs.read_text() or 0) + 1 if runs.exists() else 1
runs.write_text(str(count))
sys.exit(int(sys.argv[2]) if count < 3 else 0)
"""


def test_restarts_on_error_until_a_clean_exit(tmp_path):
    runs = tmp_path / "runs"
    assert keep.supervise([sys.executable, "-c", CHILD, str(runs), "1"], pause=0.01) == 0
    assert runs.read_text() == "3"


def test_a_configuration_error_is_final(tmp_path):
    runs = tmp_path / "runs"
    assert keep.supervise([sys.executable, "-c", CHILD, str(runs), "2"], pause=0.01) == 2
    assert runs.read_text() == "1"


def test_a_stop_signal_reaches_the_child_once_and_ends_it(tmp_path):
    ready = tmp_path / "ready"
    child = (
        "import os, pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        f"pathlib.Path({str(ready)!r}).write_text(str(os.getpid()))\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-m", "aistats_hooks.launcher.keep", "--", sys.executable, "-c", child])
    deadline = time.monotonic() + 20
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        # After a failure, leave neither the supervisor nor its child (a session of its own)
        # behind. The child is killed first: while its parent lives, its pid cannot be reused.
        if proc.poll() is None:
            child_pid = int(ready.read_text() or 0) if ready.exists() else 0
            if child_pid:
                try:
                    os.kill(child_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.kill()
            proc.wait(timeout=10)
