"""`make run` stops everything on Ctrl-C, even after a worker was killed and restarted (issue 28, item 1);
its banner tells where things are and came from (item 8); `handlers` elsewhere reports its handlers (item 10).

The killed worker's RQ scheduler child is left in a group of its own, holding
the worker's output pipe; before, Ctrl-C then never finished.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from aistats_hooks.launcher.environ import free_port
from tests.test_make_run import ROOT, Launched, alive, fresh_env
from tests.test_make_run_restart import descendants, ready, wait_for


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def rq_workers(launcher_pid: int) -> list[int]:
    """The `rq worker` processes (not their keep wrapper, not their scheduler child) under the launcher."""
    found = [p for p in descendants(launcher_pid) if re.search(r"/rq worker ", cmdline(p))]
    return [p for p in found if not any(parent_of(p) == q for q in found)]


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ctrl_c_after_a_worker_was_killed_and_restarted_leaves_no_process(tmp_path):
    port, sandbox_port = free_port(), free_port()
    # Item 8: a .env supplies the query token (and wins over the exported one, as under honcho); the sandbox's port
    # is chosen. Item 10: the handlers it names are what `handlers` reports in another shell.
    dotenv = tmp_path / "dotenv"
    dotenv.write_text(f"QUERY_API_TOKEN=qt_from_the_dotenv_file_0123456789\nAISTATS_SANDBOX_PORT={sandbox_port}\n"
                      "AISTATS_HANDLERS=examples.handlers\n")
    env = fresh_env(tmp_path, PORT=str(port), AISTATS_DEMO_BATCHES="0")
    env["QUERY_API_TOKEN"] = "qt_exported_and_overridden_0123456789"
    run = Launched(env, ("--env-file", str(dotenv)))
    try:
        wait_for(lambda: ready(f"http://127.0.0.1:{port}"), 90, "/readyz answered 200", run)
        data = tmp_path / "data"
        banner = run.output
        assert f"  Dashboard http://127.0.0.1:{port}/dashboard  (log in with QUERY_API_TOKEN" in banner
        assert f"  QUERY_API_TOKEN: from {dotenv}" in banner
        assert re.search(rf"  AISTATS_WEBHOOK_SECRET=whsec_\w+  \(generated now, kept in {re.escape(str(data))}", banner)
        assert f"SANDBOX gateway at http://127.0.0.1:{sandbox_port}/v1" in banner
        bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AISTATS_DATA_DIR": str(data)}
        listed = subprocess.run([str(ROOT / "bin" / "aistats-hooks"), "--json", "handlers"], env=bare,
                                capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout)["modules"] == ["examples.handlers"] and json.loads(listed.stdout)["data"]
        token = subprocess.run(["sh", "-c", f"grep QUERY_API_TOKEN {data / 'launcher.env'}"], capture_output=True,
                               text=True, timeout=10).stdout
        assert token.strip() == "QUERY_API_TOKEN=qt_from_the_dotenv_file_0123456789"
        # The worker and its scheduler child (a fork, once the worker holds the scheduler lock).
        worker = wait_for(lambda: rq_workers(run.proc.pid), 60, "the rq worker ran", run)[0]
        wait_for(lambda: [p for p in descendants(worker)], 60, "the worker's scheduler child started", run)
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: "restarting in" in run.output, 30, "keep restarted the worker", run)
        restarted = wait_for(lambda: [p for p in rq_workers(run.proc.pid) if p != worker], 60,
                             "the restarted rq worker ran", run)
        assert restarted
        everyone = descendants(run.proc.pid)
        assert len(everyone) >= 6  # sandbox, web (+ its workers), keep + worker, keep + cron
        run.proc.send_signal(signal.SIGINT)
        assert run.proc.wait(timeout=30) == 0, run.output[-3000:]
        run.reader.join(timeout=5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in everyone):
            time.sleep(0.2)
        assert not [(p, cmdline(p)) for p in everyone if alive(p)], "a process outlived the launcher"
        # Every process heeded SIGTERM: the orphaned scheduler too. (No "Traceback" check: rq cron raises from
        # its signal handler, so a stop that lands mid-write or mid-command can print one; RQ's, not ours.)
        assert "sending SIGKILL" not in run.output, run.output[-6000:]
        # keep got SIGTERM with its group, once: a second one, forwarded, would cold-stop RQ mid-job.
        assert not re.search(r"SIGTERM to leftover pid \d+ \(.*launcher\.keep", run.output), run.output[-6000:]
        assert "received shutdown signal 15" in run.output and run.output.count("received shutdown signal") == 1
    finally:
        if run.proc.poll() is None:
            run.kill_everything()
            run.proc.wait(timeout=10)


@pytest.mark.slow
def test_a_sandbox_port_in_use_is_one_line(tmp_path):
    import socket
    import sys

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "aistats_hooks.launcher", "--no-env-file"], cwd=ROOT,
                              env=fresh_env(tmp_path, PORT=str(free_port()), AISTATS_SANDBOX_PORT=str(taken)),
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"aistats-hooks: AISTATS_SANDBOX_PORT {taken} on 127.0.0.1 is in use: set it to a free port "
        "(or unset it: a free one is picked)"]
