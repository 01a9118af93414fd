"""Secrets stay secret (the Redis password, short webhook secrets, the embedded Redis's files),
`config` shows every setting, and a Redis that can lose data is called out at start."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from redis import Redis
from redis.exceptions import RedisError

from aistats_hooks import logs, redis_conn
from aistats_hooks.cli import cli
from aistats_hooks.cli.config_cmd import documented_defaults, every_setting, field_for
from aistats_hooks.config import Settings
from aistats_hooks.urls import masked, secrets_in
from aistats_hooks.errors import ConfigError
from aistats_hooks.launcher.environ import write_private
from aistats_hooks.launcher.environ import free_port
from bench.redis_server import RedisServer, redis_executable

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "hunter2-redis-pw"
URL = f"redis://default:{PASSWORD}@127.0.0.1:6399/0"


@pytest.fixture
def clean_env(monkeypatch):
    """An environment with none of the service's variables, whatever the developer exported."""
    for name in list(os.environ):
        if name.startswith(("AISTATS_", "REDIS_", "QUERY_", "PUBLIC_", "METRICS_", "WEB_")) or name in (
                "PORT", "LOG_LEVEL", "BIND_HOST"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_masked_and_secrets_in():
    assert masked(URL) == "redis://default:***@127.0.0.1:6399/0"
    assert masked("redis://:p@ss/w@host:1/0") == "redis://:***@host:1/0"
    assert masked("redis//u:pw@host") == "redis//u:***@host"  # malformed, masked all the same
    assert masked("unix:///tmp/r.sock?db=1&password=abc") == "unix:///tmp/r.sock?db=***&password=***"
    assert masked("redis://host:6379/0") == "redis://host:6379/0"
    # Destinations: the password, a bare token and every query value; host, port and path stay readable.
    assert masked("https://user:pw@hooks.example:8443/in?token=abc&v=2#frag") == \
        "https://user:***@hooks.example:8443/in?token=***&v=***#***"
    assert masked("https://ghp_tok3n@hooks.example/in") == "https://***@hooks.example/in"
    assert masked("https://hooks.example/users/@me?flag") == "https://hooks.example/users/@me?***"
    assert masked("user:pw@host") == "user:***@host"  # no scheme at all
    assert masked("") == ""
    assert secrets_in("redis://:s3cret%40x@h/0") == ["s3cret%40x", "s3cret@x"]
    assert secrets_in("https://ghp_tok3n@h/in?key=k%2Fv") == ["ghp_tok3n", "k%2Fv", "k/v"]
    assert secrets_in("redis://h/0") == []


def test_config_masks_the_redis_password_and_lists_every_setting(clean_env):
    env = {"REDIS_URL": URL, "AISTATS_API_KEY": "sk_config_key_value",
           "AISTATS_WEBHOOK_SECRET": "whsec_config_0123456789",
           "QUERY_API_TOKEN": "qt_config_token_value", "AISTATS_SESSION_SECRET": "session-secret-value-1234",
           "REDIS_SENTINEL_PASSWORD": "sentinel-pw-value", "AISTATS_SWEEP_INTERVAL": "45", "PORT": "8123"}
    text = CliRunner().invoke(cli, ["config"], env=env)
    as_json = CliRunner().invoke(cli, ["--json", "config"], env=env)
    assert text.exit_code == 0 and as_json.exit_code == 0, text.output + as_json.output
    shown = json.loads(as_json.stdout)
    for output in (text.output, as_json.output):
        plain = ("REDIS_URL", "AISTATS_SWEEP_INTERVAL", "PORT")
        for secret in [PASSWORD, *(v for k, v in env.items() if k not in plain)]:
            assert secret not in output
    assert "REDIS_URL=redis://default:***@127.0.0.1:6399/0" in text.output
    assert shown["AISTATS_SWEEP_INTERVAL"] == 45 and shown["PORT"] == 8123  # a setting now: checked, a number
    assert shown["AISTATS_WEBHOOK_SECRET"] == "1 configured" and shown["QUERY_API_TOKEN"] == "set"
    # Every documented variable, and every Settings field through its variable: nothing left out.
    documented = documented_defaults()
    assert {"AISTATS_DEBOUNCE_MS", "AISTATS_COMPACT_EVENTS", "METRICS_PUBLIC", "PORT"} <= set(documented)
    assert set(documented) <= set(shown)
    fields_shown = {field_for(name).name for name in shown if field_for(name)}
    assert fields_shown == {f.name for f in dataclasses.fields(Settings)}


def test_every_setting_reads_the_settings_it_is_given():
    settings = Settings.from_env({"AISTATS_DEBOUNCE_MS": "250", "AISTATS_COMPACT_EVENTS": "0", "METRICS_PUBLIC": "1"})
    shown = every_setting(settings, {})
    assert shown["AISTATS_DEBOUNCE_MS"] == 250 and shown["AISTATS_COMPACT_EVENTS"] is False
    assert shown["METRICS_PUBLIC"] is True and shown["REDIS_URL"] == "(embedded, under .data)"


def test_a_malformed_redis_url_error_hides_the_password(clean_env):
    result = CliRunner().invoke(cli, ["config"], env={"REDIS_URL": f"redis//:{PASSWORD}@host:1/0"})
    assert result.exit_code == 2 and PASSWORD not in result.output
    assert "REDIS_URL: expected a URL" in result.output and "redis//:***@host:1/0" in result.output


def test_short_webhook_secrets_are_refused():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"AISTATS_WEBHOOK_SECRET": "whsec_long_enough_secret,whsec_short"})
    assert info.value.variable == "AISTATS_WEBHOOK_SECRET"
    assert "secret 2 of 2 is 11 characters" in str(info.value) and "whsec_short" not in str(info.value)
    assert Settings.from_env({"AISTATS_WEBHOOK_SECRET": "x" * 16}).webhook_secrets == ("x" * 16,)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_the_web_process_refuses_a_short_secret_with_one_line(redis_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AISTATS_", "REDIS_"))}
    env.update(REDIS_URL=redis_url, AISTATS_WEBHOOK_SECRET="whsec_1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", "import app"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=50)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "aistats-hooks: configuration error: AISTATS_WEBHOOK_SECRET: secret 1 of 1 is 7 characters long; "
        "at least 16 are required"]


def test_the_redactor_knows_the_redis_password():
    stream = io.StringIO()
    for secrets in (logs.secrets_of(Settings(redis_url=URL)), logs.secrets_from_env({"REDIS_URL": URL})):
        handler = logs.make_handler("INFO", secrets, stream=stream)
        record = logging.LogRecord("x", logging.ERROR, "x", 0, "cannot reach %s (password %s)", (URL, PASSWORD), None)
        handler.handle(record)
    # A URL's password is hidden even when it is not configured here, whatever its length.
    logs.make_handler("INFO", [], stream=stream).handle(
        logging.LogRecord("x", logging.INFO, "x", 0, "other rediss://u:pw1@h:1/0", (), None))
    text = stream.getvalue()
    assert PASSWORD not in text and "pw1" not in text
    assert [json.loads(line)["msg"] for line in text.splitlines()] == [
        "cannot reach redis://default:[redacted]@127.0.0.1:6399/0 (password [redacted])"] * 2 + [
        "other rediss://u:[redacted]@h:1/0"]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_the_embedded_redis_keeps_its_data_private(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "left-by-an-earlier-run").write_text("x")
    os.chmod(data / "left-by-an-earlier-run", 0o644)
    code = (
        "import sys, time\n"
        "from redis import Redis\n"
        "from aistats_hooks.redis_conn import start_embedded\n"
        "client = Redis.from_url(start_embedded(sys.argv[1]))\n"
        "client.set('k', 'raw body and signature')\n"
        "client.save()\n"
        "time.sleep(1.2)\n"  # appendfsync everysec
        "client.shutdown(nosave=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code, str(data)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=50)
    assert proc.returncode in (0, 1), proc.stderr  # shutdown may close the connection under the client
    names = {p.name for p in data.iterdir()}
    assert {"redis.db", "appendonly.aof", "left-by-an-earlier-run"} <= names, names
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for path in data.iterdir():
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_write_private_makes_its_folder_private(tmp_path):
    folder = tmp_path / "fresh"
    write_private(folder / "secrets.json", "{}")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "secrets.json").stat().st_mode) == 0o600


class LossyRedis:
    """A real redis-server started with --maxmemory-policy allkeys-lru --appendonly no --save "" (TCP, loopback)."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="aistats-lossy-")
        self.socket = os.path.join(self.folder, "redis.sock")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [redis_executable(), "--port", str(self.port), "--bind", "127.0.0.1", "--unixsocket", self.socket,
             "--dir", self.folder, "--maxmemory-policy", "allkeys-lru", "--appendonly", "no", "--save", "",
             "--daemonize", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return
            except RedisError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
            time.sleep(0.02)

    def client(self) -> Redis:
        return Redis.from_url(self.url, socket_timeout=2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def lossy_redis():
    server = LossyRedis()
    yield server
    server.stop()


def test_a_redis_that_can_lose_data_is_warned_about_once(lossy_redis, caplog):
    client = lossy_redis.client()
    assert set(client.config_get("save").values()) == {""}
    with caplog.at_level(logging.INFO, logger="aistats_hooks.redis"):
        line = redis_conn.warn_if_lossy(client)
        again = redis_conn.warn_if_lossy(lossy_redis.client())
    assert "maxmemory-policy is allkeys-lru" in line and "persistence is off" in line
    assert again is None
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("WARNING", line)]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_web_and_worker_warn_once_at_start(lossy_redis):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AISTATS_", "REDIS_", "RQ_"))}
    env.update(REDIS_URL=lossy_redis.url, AISTATS_WEBHOOK_SECRET="whsec_lossy_test_secret",
               AISTATS_API_KEY="sk_lossy_1",
               PYTHONPATH=str(ROOT), PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    web = subprocess.run([sys.executable, "-c", "import app"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    worker = subprocess.run(["rq", "worker", "-c", "workers.settings", "--burst"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    for proc in (web, worker):
        assert proc.returncode == 0, proc.stderr
        warnings = [json.loads(line) for line in proc.stderr.splitlines()
                    if line.startswith("{") and "can lose acknowledged events" in line]
        assert [(w["level"], w["logger"]) for w in warnings] == [("warning", "aistats_hooks.redis")], proc.stderr
        assert "allkeys-lru" in warnings[0]["msg"] and "persistence is off" in warnings[0]["msg"]


@pytest.fixture
def safe_redis():
    server = RedisServer(appendonly=True, prefix="aistats-test-safe-").start()
    yield server
    server.stop()


def test_a_safe_redis_gives_no_warning_and_a_managed_one_a_note(safe_redis, caplog):
    client = safe_redis.client()
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert redis_conn.durability_problems(client) == []
    # A managed Redis: CONFIG is not allowed to this user.
    client.acl_setuser("app", enabled=True, passwords=["+app-password-123"], keys=["*"],
                       commands=["+@all", "-config"])
    limited = Redis(unix_socket_path=safe_redis.socket, username="app", password="app-password-123")
    assert redis_conn.durability_problems(limited) is None
    with caplog.at_level(logging.INFO, logger="aistats_hooks.redis"):
        line = redis_conn.warn_if_lossy(limited)
    assert line.startswith("Redis refused CONFIG GET") and [r.levelname for r in caplog.records] == ["INFO"]
