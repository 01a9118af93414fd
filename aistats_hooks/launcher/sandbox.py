"""The sandbox gateway of a ``make run`` stack: same key, port and batches on every start.

``.data/sandbox.json`` (0600) keeps the sandbox's API key, its port and the
stack's managed endpoint id; ``.data/sandbox-state.pickle`` keeps its batches,
files and endpoints (written by the sandbox itself, see
``aistats_hooks.sandbox.persist``). A restarted stack therefore talks to a
gateway that still knows every batch of the previous run, so nothing it
tracked turns ``not_found``. The port is ``AISTATS_SANDBOX_PORT`` when set;
else the last one, when free (the CLI's session file then stays right); else a
new one is picked.

The sandbox runs outside honcho, in its own session, writing to
``.data/sandbox.log``: the terminal's Ctrl-C does not reach it (it is stopped
after every process that calls it), and a closed stdout cannot kill it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path

from .environ import ROOT, free_port, port_in_use, write_private

SANDBOX_FILE = "sandbox.json"
STATE_FILE = "sandbox-state.pickle"
LOG_FILE = "sandbox.log"


def kept(data_dir: Path) -> dict:
    """Return what the last run kept about its sandbox ({} when nothing or unreadable)."""
    try:
        value = json.loads((data_dir / SANDBOX_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def keep(data_dir: Path, **values: object) -> None:
    """Merge ``values`` into the sandbox file."""
    write_private(data_dir / SANDBOX_FILE, json.dumps(dict(kept(data_dir), **values), indent=2) + "\n")


def key_and_port(data_dir: Path, wanted: int = 0) -> tuple[str, int, bool]:
    """Return the sandbox's API key and port (``wanted``, else kept from the last run when free, else a free one)
    and whether the key was kept."""
    previous = kept(data_dir)
    key = previous.get("api_key")
    reused = isinstance(key, str) and key.startswith("sk_sandbox_")
    if not reused:
        key = "sk_sandbox_" + secrets.token_hex(16)
    port = previous.get("port")
    if wanted:
        port = wanted  # the launcher checked that it is free
    elif not isinstance(port, int) or not 1024 <= port <= 65535 or port_in_use("127.0.0.1", port):
        port = free_port()
    keep(data_dir, api_key=key, port=port)
    return key, port, reused


def management_key(data_dir: Path) -> str:
    """Return the sandbox's management key (what /v1/webhook-endpoints takes), kept from the last run when possible."""
    key = kept(data_dir).get("management_key")
    if not (isinstance(key, str) and key.startswith("phaseo_v1_mk_sandbox_")):
        key = "phaseo_v1_mk_sandbox_" + secrets.token_hex(16)
        keep(data_dir, management_key=key)
    return key


def start(env: dict[str, str], data_dir: Path, port: int, speed: float) -> subprocess.Popen:
    """Start the sandbox on ``port`` with its state file; its output goes to ``.data/sandbox.log``."""
    # 0600 like everything in the data folder (an existing log keeps its mode: make_private fixed it at start).
    with os.fdopen(os.open(data_dir / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "aistats_hooks.sandbox", "--host", "127.0.0.1", "--port", str(port),
             "--speed", str(speed), "--state-file", str(data_dir / STATE_FILE)],
            env=env, cwd=str(ROOT), start_new_session=True, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen | None) -> None:
    """Stop the sandbox (it writes its state on the way out)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=2)  # it only writes its state file: Ctrl-C must end everything within 10 s
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Watchdog:
    """Report and restart a sandbox that died while ``make run`` runs (its state file keeps its batches).

    Checked once a second from its own thread; ``on_restart(new_pid)`` lets the formation spare the new
    process at stop. ``stop()`` first, then ``sandbox.stop(watchdog.proc)``.
    """

    def __init__(self, proc: subprocess.Popen, env: dict[str, str], data_dir: Path, port: int, speed: float,
                 *, say=print, on_restart=lambda pid: None, every: float = 1.0) -> None:
        self.proc, self.env, self.data_dir, self.port, self.speed = proc, env, data_dir, port, speed
        self.say, self.on_restart, self.every = say, on_restart, every
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-watchdog", daemon=True)

    def start(self) -> "Watchdog":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            code = self.proc.poll()
            if code is None or self._stop.is_set():
                continue
            self.restarts += 1
            self.say(f"aistats-hooks | the sandbox gateway exited with status {code}: restarting it "
                     f"(log {self.data_dir / LOG_FILE})", flush=True)
            self.proc = start(self.env, self.data_dir, self.port, self.speed)
            self.on_restart(self.proc.pid)
