"""make run's supervisor: restart worker and cron on errors, never on a clean stop or a bad setting."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from aistats_hooks.launcher import keep

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
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        f"pathlib.Path({str(ready)!r}).write_text('1')\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-m", "aistats_hooks.launcher.keep", "--", sys.executable, "-c", child])
    deadline = time.monotonic() + 20
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
