"""Run Debian's nginx in the foreground with ``deploy/nginx.conf``, its ports substituted.

The bench's slow-client phase and ``tests/test_nginx.py`` put the shipped config, unchanged
but for where it listens and where the web process is, in front of the Procfile's web command.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "deploy" / "nginx.conf"


def available() -> bool:
    """True when an nginx binary is on PATH (or in /usr/sbin)."""
    return binary() is not None


def binary() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def config_text(listen_port: int, upstream_port: int) -> str:
    """``deploy/nginx.conf`` listening on loopback ``listen_port``, passing to ``upstream_port``."""
    text = CONFIG.read_text()
    text, listens = re.subn(r"^(\s*)listen \d+;", rf"\1listen 127.0.0.1:{listen_port};", text, flags=re.M)
    text, servers = re.subn(r"^(\s*)server 127\.0\.0\.1:\d+;", rf"\g<1>server 127.0.0.1:{upstream_port};", text,
                            flags=re.M)
    if (listens, servers) != (1, 1):
        raise ValueError("deploy/nginx.conf: expected one `listen` and one upstream `server` line")
    return text


class Nginx:
    """nginx as a child process, from a copy of the shipped config in a temporary prefix."""

    def __init__(self, listen_port: int, upstream_port: int) -> None:
        self.port = listen_port
        self.prefix = Path(tempfile.mkdtemp(prefix="aistats-nginx-"))
        self.prefix.chmod(0o755)  # nginx's workers (user nobody) write request bodies under it
        (self.prefix / "nginx.conf").write_text(config_text(listen_port, upstream_port))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> Nginx:
        nginx = binary()
        if nginx is None:
            raise RuntimeError("nginx is not installed (apt-get install -y nginx)")
        self.log = open(self.prefix / "stderr.log", "wb")
        self.proc = subprocess.Popen([nginx, "-c", str(self.prefix / "nginx.conf"), "-p", str(self.prefix)],
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited: " + (self.prefix / "stderr.log").read_text()[-2000:])
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("nginx did not start listening")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: nginx's fast shutdown, workers included
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
