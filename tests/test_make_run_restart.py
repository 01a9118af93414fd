"""`make run` as a newcomer uses it: restart on the same .data, a second run, a closed stdout, pasted hints.

Each test starts the real launcher (embedded Redis, sandbox, honcho's web,
worker, cron and demo) in a fresh data folder.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from aistats_hooks import launcher
from aistats_hooks.launcher.environ import free_port
from tests.test_make_run import ROOT, Launched, alive, fresh_env

TERMINAL = {"completed", "failed", "cancelled", "expired"}
DEMO = len(launcher.DEMO_PLANS)


def wait_for(check, timeout: float, what: str, run: Launched | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (httpx.HTTPError, ValueError, KeyError):
            value = None
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what} within {timeout:g} s" + (f"\n{run.output[-4000:]}" if run else ""))


def demo_batches(base: str, token: str) -> list[dict]:
    answer = httpx.get(f"{base}/batches", params={"session_id": "demo", "limit": 100},
                       headers={"Authorization": f"Bearer {token}"}, timeout=5)
    return answer.json()["data"] if answer.status_code == 200 else []


def ready(base: str) -> bool:
    return httpx.get(f"{base}/readyz", timeout=2).status_code == 200


def stop(run: Launched) -> None:
    run.proc.send_signal(signal.SIGINT)
    assert run.proc.wait(timeout=60) == 0, run.output[-3000:]
    run.reader.join(timeout=5)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc: ppid links)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parents[int(entry)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {p for p in found if alive(p)}


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_restart_keeps_batches_key_and_endpoint_refuses_a_second_run_and_hints_work(tmp_path):
    port = free_port()
    env = fresh_env(tmp_path, PORT=str(port))
    data = tmp_path / "data"
    base = f"http://127.0.0.1:{port}"
    first = Launched(env)
    second = None
    try:
        wait_for(lambda: ready(base), 90, "/readyz answered 200", first)
        token = json.loads((data / "secrets.json").read_text())["QUERY_API_TOKEN"]
        created = wait_for(lambda: len(demo_batches(base, token)) == DEMO and demo_batches(base, token), 90,
                           "the demo batches were tracked", first)
        kept = json.loads((data / "sandbox.json").read_text())
        endpoint_id = re.search(r"Endpoint  ([0-9a-f-]{36}) in the sandbox", first.output).group(1)
        assert kept["endpoint_id"] == endpoint_id and kept["api_key"].startswith("sk_sandbox_")

        # Item 2: a second make run on the same .data (another port) refuses with one line, harming nothing.
        refused = subprocess.run([sys.executable, "-m", "aistats_hooks.launcher", "--no-env-file"], cwd=ROOT,
                                 env=fresh_env(tmp_path, PORT=str(free_port())), capture_output=True, text=True,
                                 timeout=60)
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines() == [
            f"aistats-hooks: another make run (pid {first.proc.pid}) owns {data}: stop it first, "
            "or set AISTATS_DATA_DIR to another folder"]
        assert ready(base)

        # Item 7: the printed hints work pasted into a new shell (nothing exported but the data folder).
        hint = wait_for(lambda: re.search(r"demo: follow them: (\S+) status (\S+)  \|  (\S+) list --session-id demo"
                                          r"  \|  (sh -c '.*')$", first.output, re.M), 30, "the demo printed its hints",
                        first)
        bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AISTATS_DATA_DIR": str(data)}
        status = subprocess.run([hint.group(1), "--json", "status", hint.group(2)], env=bare, capture_output=True,
                                text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["id"] == hint.group(2)
        metrics = subprocess.run(hint.group(4), shell=True, env=bare, capture_output=True, text=True, timeout=60)
        assert "aistats_webhook_deliveries_total" in metrics.stdout, metrics.stdout[:500] + metrics.stderr

        stop(first)
        assert not (data / "sandbox-state.pickle").stat().st_mode & 0o077

        # Item 3: the restart finds the sandbox's batches, key and endpoint; no new demo batches.
        second = Launched(env)
        wait_for(lambda: ready(base), 90, "/readyz answered 200 after the restart", second)
        assert "(same key as the last run)" in second.output
        assert f"Endpoint  {endpoint_id} in the sandbox" in second.output and "kept from the last run" in second.output
        wait_for(lambda: f"demo: {DEMO} demo batch(es) from an earlier run are kept" in second.output, 60,
                 "the demo kept the earlier batches", second)
        final = wait_for(lambda: all(b["status"] in TERMINAL for b in demo_batches(base, token))
                         and demo_batches(base, token), 120, "every demo batch ended after the restart", second)
        assert sorted(b["id"] for b in final) == sorted(b["id"] for b in created)
        assert not [b for b in final if b["status"] == "not_found"]
        assert "Traceback" not in first.output + second.output
        stop(second)
    finally:
        for run in (first, second):
            if run is not None and run.proc.poll() is None:
                run.kill_everything()
                run.proc.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_closed_stdout_leaves_the_whole_stack_running_until_sigint(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "aistats_hooks.launcher", "--no-env-file"], cwd=ROOT,
                            env=fresh_env(tmp_path, PORT=str(port)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        head = [proc.stdout.readline() for _ in range(5)]  # `make run 2>&1 | head -5`
        proc.stdout.close()
        assert any("aistats-hooks" in line for line in head)
        wait_for(lambda: ready(base), 90, "/readyz answered 200 with stdout closed")
        token = json.loads((tmp_path / "data" / "secrets.json").read_text())["QUERY_API_TOKEN"]
        # Demo batches created, delivered, reconciled: web, worker, Redis and the sandbox all work,
        # long after the launcher's first write to the closed pipe.
        wait_for(lambda: len(demo_batches(base, token)) == DEMO, 90, "the demo batches were tracked")
        wait_for(lambda: any(b["status"] in TERMINAL for b in demo_batches(base, token)), 90,
                 "a demo batch was reconciled to its end")
        assert proc.poll() is None and ready(base)
        children = descendants(proc.pid)
        assert len(children) >= 6  # sandbox, redis, web (+ its workers), keep+worker, keep+cron, demo
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(alive(p) for p in children):
            time.sleep(0.2)
        assert not [p for p in children if alive(p)], "a process outlived the launcher"
    finally:
        if proc.poll() is None:
            for pid in [proc.pid, *descendants(proc.pid)]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            proc.wait(timeout=10)


@pytest.mark.slow
def test_a_sandbox_that_dies_is_reported_and_started_again(tmp_path):
    port = free_port()
    env = fresh_env(tmp_path, PORT=str(port))
    data = tmp_path / "data"
    run = Launched(env)
    try:
        wait_for(lambda: ready(f"http://127.0.0.1:{port}"), 90, "/readyz answered 200", run)
        kept = json.loads((data / "sandbox.json").read_text())
        sandbox_url = f"http://127.0.0.1:{kept['port']}/v1/batches"
        key = {"Authorization": f"Bearer {kept['api_key']}"}
        assert httpx.get(sandbox_url, headers=key, timeout=5).status_code == 200
        os.kill(run.sandbox_pid(), signal.SIGKILL)
        wait_for(lambda: "the sandbox gateway exited with status -9: restarting it" in run.output, 20,
                 "the launcher reported the dead sandbox", run)
        wait_for(lambda: httpx.get(sandbox_url, headers=key, timeout=2).status_code == 200, 30,
                 "the sandbox answered again on its port", run)
        assert run.proc.poll() is None
        stop(run)
        with pytest.raises(httpx.TransportError):  # the restarted sandbox was stopped with the rest
            httpx.get(sandbox_url, headers=key, timeout=2)
    finally:
        if run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGKILL)
