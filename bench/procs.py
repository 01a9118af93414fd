"""The processes the bench starts: gunicorn, RQ workers and the sandbox gateway.

Each runs in its own session (process group), so stopping one ends exactly
the processes the bench started, by their own ids and nothing else.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    """Return a loopback port free at the time of asking."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(**values: str) -> dict[str, str]:
    """Return this process's environment plus ``values`` and the repo on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AISTATS_", "REDIS_URL", "QUERY_API"))}
    env.update(values)
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Proc:
    """One started process group, its log file and how to stop it."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        n = 1
        while self.log_path.exists():  # one log per process, never a predecessor's lines
            n += 1
            self.log_path = log_dir / f"{name}-{n}.log"
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        """Return the end of the process's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """Signal the process group this bench started, then wait; kill it if it lingers."""
        if self.alive():
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._log.close()


def wait_http(url: str, proc: Proc, timeout: float = 30, ok=(200, 202, 204, 401, 404, 405)) -> None:
    """Wait until ``url`` answers (any status in ``ok``), or fail with the process's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        try:
            if httpx.get(url, timeout=1).status_code in ok:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not answer {url} within {timeout}s:\n{proc.log_tail()}")


def gunicorn(name: str, app: str, port: int, env: dict[str, str], log_dir: Path, *, workers: int = 2) -> Proc:
    """Start ``gunicorn -w N`` (sync workers) serving ``app`` on loopback and wait for it."""
    args = [str(BIN / "gunicorn"), app, "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--worker-class", "sync", "--preload", "--no-control-socket", "--log-level", "warning"]
    proc = Proc(name, args, env, log_dir)
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    return proc


def rq_worker(name: str, queue: str, env: dict[str, str], log_dir: Path, *,
              worker_class: str | None = None, burst: bool = False) -> Proc:
    """Start the stock ``rq worker`` on ``queue`` (REDIS_URL from ``env``)."""
    args = [str(BIN / "rq"), "worker", "--url", env["REDIS_URL"], "--logging_level", "WARNING",
            "--name", name, "--disable-job-desc-logging"]
    if worker_class:
        args += ["--worker-class", worker_class]
    if burst:
        args.append("--burst")
    else:
        args.append("--with-scheduler")  # as the Procfile: retries and debounced follow-ups need it
    return Proc(name, args + [queue], env, log_dir)


def sandbox(api_key: str, speed: float, seed: int, env: dict[str, str], log_dir: Path,
            *, delivery_workers: int = 8) -> tuple[Proc, str]:
    """Start the sandbox gateway on a free port; return it and its base URL (…/v1)."""
    args = [sys.executable, "-m", "aistats_hooks.sandbox", "--port", "0", "--api-key", api_key,
            "--speed", f"{speed:g}", "--seed", str(seed), "--delivery-workers", str(delivery_workers)]
    proc = Proc("sandbox", args, env, log_dir)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"sandbox gateway on (http://\S+/v1)", proc.log_tail(50))
        if found:
            return proc, found.group(1)
        if not proc.alive():
            raise RuntimeError(f"sandbox exited:\n{proc.log_tail()}")
        time.sleep(0.05)
    proc.stop()
    raise RuntimeError("sandbox did not start")
