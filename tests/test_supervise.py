"""workers.supervise: an RQ process rides out a Redis outage instead of exiting (and taking honcho's formation down)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.helpers import wait_for

# Each test starts real processes.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def supervise(*argv: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "workers.supervise", *argv], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_restarts_a_failing_child_until_it_succeeds(tmp_path):
    counter = tmp_path / "runs"
    script = (f"import pathlib,sys; p=pathlib.Path({str(counter)!r}); n=int(p.read_text() or 0) if p.exists() else 0; "
              "p.write_text(str(n+1)); sys.exit(1 if n < 2 else 0)")
    proc = supervise(sys.executable, "-c", script)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert counter.read_text() == "3"
    restarts = [line for line in err.splitlines() if "restarting in" in line]
    assert len(restarts) == 2 and '"level": "warning"' in restarts[0]


def test_a_configuration_error_is_not_restarted(tmp_path):
    counter = tmp_path / "runs"
    proc = supervise(sys.executable, "-c", f"import pathlib,sys; pathlib.Path({str(counter)!r}).write_text('x'); sys.exit(2)")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and counter.read_text() == "x"
    assert err == ""  # the child's one line is the only one: the supervisor adds none


def test_sigterm_reaches_the_child_and_ends_both(tmp_path):
    marker = tmp_path / "got-term"
    script = (f"import pathlib,signal,sys,time\n"
              f"def bye(*a):\n pathlib.Path({str(marker)!r}).write_text('1'); sys.exit(0)\n"
              "signal.signal(signal.SIGTERM, bye)\nprint('ready', flush=True)\ntime.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-m", "workers.supervise", sys.executable, "-c", script], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert marker.read_text() == "1"


def test_missing_command_is_one_line(tmp_path):
    proc = supervise("no-such-command-xyz")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 127 and "command not found" in err and "Traceback" not in err


def test_rq_cron_survives_redis_stopping_and_starting(tmp_path):
    """The Procfile's cron process under the supervisor: Redis killed, then back; cron enqueues again."""
    from bench.redis_server import redis_executable

    sock = tmp_path / "r.sock"
    conf = tmp_path / "redis.conf"
    conf.write_text(f"port 0\nunixsocket {sock}\nunixsocketperm 700\ndir {tmp_path}\nsave \"\"\nappendonly no\n")

    def start_redis() -> subprocess.Popen:
        server = subprocess.Popen([redis_executable(), str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        def up() -> bool:
            try:
                return sock.exists() and redis.Redis(unix_socket_path=str(sock)).ping()
            except redis.RedisError:
                return False

        wait_for(up, timeout=10)
        return server

    server = start_redis()
    queue = "supervised"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AISTATS_", "REDIS_URL", "QUERY_API"))}
    env.update(REDIS_URL=f"unix://{sock}", AISTATS_API_KEY="sk_test_supervise", AISTATS_QUEUE=queue,
               AISTATS_KEY_PREFIX="sup", AISTATS_WEBHOOK_SECRET="whsec_test_secret", PYTHONPATH=str(ROOT),
               PATH=f"{BIN}:{env.get('PATH', '')}")
    cron = subprocess.Popen([sys.executable, "-m", "workers.supervise", str(BIN / "rq"), "cron", "-c", "workers.settings",
                             str(ROOT / "workers" / "cron_config.py")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "cron.log", "w"))
    try:
        client = redis.Redis(unix_socket_path=str(sock))
        wait_for(lambda: client.llen(f"rq:queue:{queue}") > 0, timeout=30)
        server.kill()
        server.wait()
        wait_for(lambda: "restarting in" in (tmp_path / "cron.log").read_text(), timeout=30)
        assert cron.poll() is None, "the supervisor exited with Redis down"
        time.sleep(1)  # Redis stays down through at least one more restart attempt
        assert cron.poll() is None
        server = start_redis()
        client = redis.Redis(unix_socket_path=str(sock))
        assert client.llen(f"rq:queue:{queue}") == 0  # a fresh, empty Redis
        wait_for(lambda: client.llen(f"rq:queue:{queue}") > 0, timeout=60)
        assert cron.poll() is None
    finally:
        cron.send_signal(signal.SIGTERM)
        try:
            cron.wait(timeout=20)
        except subprocess.TimeoutExpired:
            cron.kill()
        server.kill()
        server.wait()
