"""The Procfile's formation under honcho rides out Redis stopping and starting again.

As the README says to run it: `.venv/bin/honcho start` from the repository, settings in
`.env`. Redis (a real redis-server) is stopped for a few seconds: the web process answers
503 meanwhile, no process exits (honcho would stop them all), and once Redis is back the
worker and cron are working again and a delivery is acknowledged.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis

from aistats_hooks.launcher.environ import free_port
from bench.redis_server import redis_executable
from tests.helpers import make_event, signed, wait_for

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


class Server:
    """redis-server on a loopback port, stopped and started again with the same files."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.config = folder / "redis.conf"
        self.config.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {folder}\nappendonly yes\nsave \"\"\n"
                               f"logfile {folder / 'redis.log'}\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([redis_executable(), str(self.config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: redis.Redis(port=self.port).ping(), timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def formation(tmp_path):
    if not (BIN / "honcho").exists():
        pytest.skip("honcho is a development requirement: make installs it")
    app = tmp_path / "app"
    shutil.copytree(ROOT, app, ignore=shutil.ignore_patterns(".venv", ".git", ".data", "__pycache__", "*.egg-info",
                                                              "results", ".pytest_cache"))
    server = Server(tmp_path)
    server.start()
    port = free_port()
    (app / ".env").write_text("\n".join([
        f"REDIS_URL=redis://127.0.0.1:{server.port}/0?socket_timeout=2&socket_connect_timeout=2",
        f"PORT={port}", "BIND_HOST=127.0.0.1", "AISTATS_API_KEY=sk_formation_0123456789",
        "AISTATS_BASE_URL=http://127.0.0.1:9/v1", "AISTATS_WEBHOOK_SECRET=whsec_test_secret",
        "QUERY_API_TOKEN=qt_formation_0123456789", "WEB_CONCURRENCY=1", "LOG_LEVEL=WARNING", "",
    ]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AISTATS_", "REDIS_URL", "QUERY_API", "PORT"))}
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    log = open(tmp_path / "honcho.log", "wb")
    honcho = subprocess.Popen([str(BIN / "honcho"), "start"], cwd=app, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        yield honcho, server, f"http://127.0.0.1:{port}", tmp_path / "honcho.log"
    finally:
        if honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGTERM)
            try:
                honcho.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(honcho.pid, signal.SIGKILL)
                honcho.wait(10)
        log.close()
        server.stop()


def ready(base: str) -> int:
    try:
        return httpx.get(base + "/readyz", timeout=3).status_code
    except httpx.TransportError:
        return 0


def workers_alive(port: int) -> int:
    try:
        return len(redis.Redis(port=port).smembers("rq:workers"))
    except redis.RedisError:
        return 0


def test_the_formation_survives_redis_going_away_and_coming_back(formation):
    honcho, server, base, log = formation
    wait_for(lambda: ready(base) == 200, timeout=60)
    wait_for(lambda: workers_alive(server.port) >= 1, timeout=60)

    server.stop()
    wait_for(lambda: ready(base) == 503, timeout=20)  # the web process says so; it does not go away
    body, headers = signed(make_event("batch_formation"))
    during = httpx.post(base + "/webhooks/aistats", content=body, headers=headers, timeout=10)
    assert during.status_code == 503 and during.json()["error"] == "store_unavailable"  # the gateway retries
    # Long enough for rq cron to meet the outage and exit: the supervisor restarts it, honcho sees nothing.
    wait_for(lambda: b"exited with" in log.read_bytes() and b"restarting in" in log.read_bytes(), timeout=60)
    assert honcho.poll() is None, log.read_text()[-3000:]

    server.start()
    wait_for(lambda: ready(base) == 200, timeout=60)
    wait_for(lambda: workers_alive(server.port) >= 1, timeout=90)
    after = httpx.post(base + "/webhooks/aistats", content=body, headers=headers, timeout=10)
    assert after.status_code == 202
    assert honcho.poll() is None, log.read_text()[-3000:]
