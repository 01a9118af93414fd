"""The processes the bench starts: gunicorn, RQ workers and the sandbox gateway.

Each runs in its own session (process group), so stopping one ends exactly
the processes the bench started, by their own ids and nothing else.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from aistats_hooks.launcher.environ import free_port

__all__ = ["Proc", "descendants", "free_port", "gunicorn", "procfile_web", "procfile_web_argv", "rq_cron", "rq_worker", "sandbox",
           "service_env", "wait_http"]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def service_env(**values: str) -> dict[str, str]:
    """Return this process's environment plus ``values`` and the repo on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AISTATS_", "REDIS_URL", "QUERY_API"))}
    env.update(values)
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def descendants(pid: int) -> list[int]:
    """Return the pids below ``pid`` (Linux /proc): RQ's work-horse runs in a session of its own."""
    children: dict[int, list[int]] = {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Proc:
    """One child process in its own session (process group), its log file and how to stop it.

    ``start`` may be called again after the process exited (chaos restarts
    workers and Redis); every start appends to the same log, after a header.
    """

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.log_path = log_dir / f"{name}.log"
        n = 1
        while self.log_path.exists():  # one log per process, never a predecessor's lines
            n += 1
            self.log_path = log_dir / f"{name}-{n}.log"
        self.popen: subprocess.Popen | None = None
        self.starts = 0
        self.unexpected_exits = 0  # counted by whoever restarts it (chaos's supervisor)

    def start(self) -> Proc:
        """Start the process; return self."""
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            log.write(f"--- start {time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        self.starts += 1
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        """Return the end of the process's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        """Signal the process, its group and every descendant (RQ's horse calls setsid)."""
        if self.popen is None:
            return
        for pid in descendants(self.popen.pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM what this started (a stopped one is woken first), SIGKILL what lingers, reap."""
        if self.popen is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self.signal(signal.SIGKILL)  # stragglers of the group too
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.popen = None

    def kill(self) -> None:
        """SIGKILL the group and reap it."""
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(10)
            self.popen = None


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
    """Start ``gunicorn -w N`` (sync workers: the web command before the slow-client work) serving ``app``."""
    args = [str(BIN / "gunicorn"), app, "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--worker-class", "sync", "--preload", "--no-control-socket", "--log-level", "warning"]
    proc = Proc(name, args, env, log_dir).start()
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    return proc


def procfile_web_argv(app: str, port: int, env: dict[str, str] | None = None) -> list[str]:
    """Return the Procfile's ``web`` command serving ``app`` on loopback ``port``, variables expanded.

    The same command line serves the receiver and bare Flask, so their ratio
    measures the app, not two servers.
    """
    from honcho.environ import parse_procfile

    env = dict(os.environ if env is None else env, PORT=str(port), BIND_HOST="127.0.0.1", LOG_LEVEL="warning")
    line = dict(parse_procfile((ROOT / "Procfile").read_text()).processes)["web"]
    line = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1)) or m.group(2), line)
    line = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), line)
    argv = shlex.split(line)
    if argv[0] != "gunicorn" or argv[1] != "app:app":
        raise RuntimeError(f"the Procfile's web command is not `gunicorn app:app ...`: {line}")
    return [str(BIN / "gunicorn"), app] + argv[2:]


def procfile_web(name: str, app: str, port: int, env: dict[str, str], log_dir: Path) -> Proc:
    """Start the Procfile's web command serving ``app`` on loopback and wait for it."""
    proc = Proc(name, procfile_web_argv(app, port, env), env, log_dir).start()
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
    return Proc(name, args + [queue], env, log_dir).start()


def rq_cron(name: str, env: dict[str, str], log_dir: Path) -> Proc:
    """Start the Procfile's cron command (``rq cron -c workers.settings workers/cron_config.py``)."""
    return Proc(name, [str(BIN / "rq"), "cron", "-c", "workers.settings", str(ROOT / "workers" / "cron_config.py")],
                env, log_dir).start()


def sandbox(api_key: str, speed: float, seed: int, env: dict[str, str], log_dir: Path,
            *, delivery_workers: int = 8, extra: list[str] | None = None, name: str = "sandbox") -> tuple[Proc, str]:
    """Start the sandbox gateway on a free port (``extra``: more of its options); return it and its base URL (…/v1)."""
    args = [sys.executable, "-m", "aistats_hooks.sandbox", "--port", "0", "--api-key", api_key,
            "--speed", f"{speed:g}", "--seed", str(seed), "--delivery-workers", str(delivery_workers), *(extra or [])]
    proc = Proc(name, args, env, log_dir).start()
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
