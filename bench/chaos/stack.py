"""The real stack on loopback: redis-server, sandbox, gunicorn, RQ workers, cron.

Every process runs in its own session (process group), so a fault or the
final stop signals exactly the processes started here, by their own ids.
Logs go to files in the run's temp dir; they are kept when the run fails.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
from redis import Redis
from redis.exceptions import RedisError

from aistats_hooks import job_queues

from . import archive_check
from ..nginx import Nginx
from ..nginx import available as nginx_available
from ..procs import Proc, free_port, procfile_web_argv
from ..redis_server import redis_executable

ROOT = Path(__file__).resolve().parents[2]
CRON_CONFIG = ROOT / "workers" / "cron_config.py"


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``predicate`` until truthy, or raise naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(interval)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f}s")


class Stack:
    """All processes of one chaos run, with a fresh secret, token and key prefix."""

    def __init__(self, opts, workdir: Path) -> None:
        self.opts, self.dir = opts, workdir
        self.logdir = workdir / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        tag = os.urandom(4).hex()
        self.prefix = f"chaos{tag}"
        self.api_key = "sk_chaos_" + os.urandom(16).hex()
        self.token = "qt_chaos_" + os.urandom(16).hex()
        self.old_secret = "whsec_chaos_old_" + os.urandom(16).hex()
        self.new_secret = "whsec_chaos_new_" + os.urandom(16).hex()
        self.web_secrets = [self.old_secret]
        self.redis_port, self.web_port, self.sandbox_port = free_port(), free_port(), free_port()
        # As deployed: Debian's nginx with deploy/nginx.conf on the public port, gunicorn behind it
        # (slow clients and every delivery meet nginx). Without nginx, gunicorn takes the public port.
        self.nginx: Nginx | None = None
        self.gunicorn_port = free_port() if nginx_available() else self.web_port
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.procs: dict[str, Proc] = {}
        self.cron_mode = "rq cron" if CRON_CONFIG.exists() else "chaos loop"
        self._redis: Redis | None = None
        self.topology = None  # --failover: bench.failover.Topology instead of one redis-server
        if getattr(opts, "failover", False):
            self.redis_url = "redis://127.0.0.1/0"  # with Sentinel only its db and options count

    # -- environment ------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        o = self.opts
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AISTATS_", "QUERY_API", "REDIS_URL"))}
        env.update({
            "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "WARNING",
            "REDIS_URL": self.redis_url, "AISTATS_API_KEY": self.api_key,
            "AISTATS_BASE_URL": self.sandbox_url + "/v1", "AISTATS_KEY_PREFIX": self.prefix,
            "AISTATS_QUEUE": self.prefix, "QUERY_API_TOKEN": self.token,
            "AISTATS_WEBHOOK_SECRET": ",".join(self.web_secrets),
            "AISTATS_WEBHOOK_TOLERANCE": str(o.tolerance), "AISTATS_STALE_AFTER": str(o.stale_after),
            "AISTATS_SWEEP_INTERVAL": str(o.sweep_interval), "AISTATS_UPSTREAM_TIMEOUT": "10",
            # The run's sweep is the aggressive 5 s backstop it always was: uncapped (the default caps it).
            "AISTATS_SWEEP_MAX_PER_HOUR": "0",
            "AISTATS_DATA_DIR": str(self.dir / "data"), "PUBLIC_BASE_URL": self.web_url,
            # Every transition runs a handler that counts its runs (bench/chaos/handler_runs.py checks them).
            "AISTATS_HANDLERS": "bench.counting_handlers",
            # RQ retries a SIGKILLed worker's job once its timeout (plus a minute) has passed: keep it short.
            "AISTATS_HANDLER_TIMEOUT": "20",
        })
        env.update(getattr(self, "forward_env", {}))  # forwarding to the chaos receiver (forward_check.py)
        env.update(archive_check.env(self))  # every ended batch's files archived (archive_check.py)
        env.update(getattr(self, "alert_env", {}))  # alerts to the chaos receiver (alert_check.py)
        if self.topology is not None:
            env.update(self.topology.env(), AISTATS_MIN_REPLICAS=str(self.opts.min_replicas))
        env.update(extra)
        return env

    def redis(self) -> Redis:
        """A client of the run's Redis with short timeouts (the harness's own)."""
        if self._redis is None and self.topology is not None:
            self._redis = self.topology.client()
        if self._redis is None:
            self._redis = Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)
        return self._redis

    # -- processes --------------------------------------------------------
    def _add(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        proc = Proc(name, argv, env, self.logdir)
        self.procs[name] = proc
        return proc.start()

    def start_redis(self) -> None:
        if getattr(self.opts, "failover", False):
            from ..failover import Topology

            self.topology = Topology(appendfsync=self.opts.appendfsync).start()
            return
        data = self.dir / "redis"
        data.mkdir(exist_ok=True)
        argv = [redis_executable(), "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(data),
                "--appendonly", "yes", "--appendfsync", self.opts.appendfsync, "--save", "",
                "--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning"]
        proc = self.procs.get("redis") or Proc("redis", argv, dict(os.environ), self.logdir)
        self.procs["redis"] = proc
        proc.start()
        wait_until(lambda: Redis(port=self.redis_port, socket_timeout=1).ping(), 20, "redis-server")

    def start_sandbox(self) -> None:
        o = self.opts
        self._add("sandbox", [sys.executable, "-m", "aistats_hooks.sandbox", "--port", str(self.sandbox_port),
                              "--api-key", self.api_key, "--speed", str(o.speed), "--seed", str(o.seed),
                              "--slow-seconds", str(o.slow_seconds), "--delivery-workers", "8"], self.env())
        wait_until(lambda: httpx.get(self.sandbox_url + "/_sandbox/stats",
                                     headers={"Authorization": f"Bearer {self.api_key}"}).status_code == 200,
                   30, "sandbox")

    def start_web(self) -> None:
        # The web's Redis client gets a short socket timeout through the URL
        # (redis-py lets query options win), so a stalled Redis answers 503 fast.
        env = self.env(REDIS_URL=self.redis_url + "?socket_timeout=2&socket_connect_timeout=2")
        # The Procfile's own web command (its worker class reads requests whole before a thread runs them).
        env["WEB_CONCURRENCY"] = str(self.opts.web_workers)
        argv = procfile_web_argv("app:app", self.gunicorn_port, env) + ["--graceful-timeout", "5", "--timeout", "30"]
        self._add("web", argv, env)
        if self.gunicorn_port != self.web_port and self.nginx is None:
            self.nginx = Nginx(self.web_port, self.gunicorn_port).start()
        wait_until(lambda: httpx.get(self.web_url + "/readyz", timeout=2).status_code == 200, 30, "gunicorn")

    def restart_web(self, secrets: list[str]) -> None:
        self.procs["web"].stop()
        self.web_secrets = list(secrets)
        self.start_web()

    def start_worker(self, n: int, roles: tuple[str, ...] = ("reconcile",)) -> None:
        """Worker ``n`` serving the queues of ``roles`` (aistats_hooks/job_queues.py), reconciles first."""
        argv = [sys.executable, "-m", "rq.cli", "worker", "--with-scheduler", "--maintenance-interval", "30",
                "--url", self.redis_url, "--logging_level", "WARNING", *job_queues.names(self.prefix, roles)]
        if self.topology is not None:  # as the Procfile: RQ reads SENTINEL from the settings module
            argv[argv.index("--url"):argv.index("--url") + 2] = ["-c", "workers.settings"]
        if self.opts.worker_class:  # e.g. rq.worker.SimpleWorker, as the Procfile runs
            argv[4:4] = ["-w", self.opts.worker_class]
        self._add(f"worker{n}", argv, self.env())

    def start_cron(self) -> None:
        if self.cron_mode == "rq cron":
            argv = [sys.executable, "-m", "rq.cli", "cron", "-c", "workers.settings", "--logging-level", "WARNING",
                    str(CRON_CONFIG)]
            self._add("cron", argv, self.env())

    def workers(self) -> list[Proc]:
        return [p for name, p in sorted(self.procs.items()) if name.startswith("worker")]

    def start(self) -> None:
        self.start_redis()
        self.start_sandbox()
        self.start_web()
        # Reconciles on their own workers; handlers, forwarding and the archive on theirs (--side-workers),
        # so a forwarding destination that hangs or drips cannot slow a reconcile.
        side = getattr(self.opts, "side_workers", 1)
        for n in range(self.opts.workers):
            self.start_worker(n, ("reconcile",) if side else job_queues.ROLES)
        for n in range(self.opts.workers, self.opts.workers + side):
            self.start_worker(n, ("handlers", "forward", "archive"))
        self.start_cron()

    def supervise(self) -> list[str]:
        """Restart workers and cron that exited on their own (a PaaS would); name them."""
        restarted = []
        for name, proc in list(self.procs.items()):
            if (name.startswith("worker") or name == "cron") and proc.popen is not None and not proc.alive():
                proc.unexpected_exits += 1
                proc.start()
                restarted.append(name)
        return restarted

    def redis_ready(self) -> bool:
        try:
            return bool(self.redis().ping())
        except RedisError:
            return False

    def stop(self) -> None:
        """Stop everything, clients first, Redis last; never raises."""
        order = [n for n in self.procs if n not in ("redis", "sandbox")] + ["sandbox", "redis"]
        for name in order:
            proc = self.procs.get(name)
            if proc is not None:
                try:
                    proc.stop()
                except Exception as exc:  # noqa: BLE001
                    print(f"chaos: stopping {name}: {exc}", file=sys.stderr)
            if name == "web" and self.nginx is not None:
                self.nginx.stop()
        if self._redis is not None:
            self._redis.close()
        if self.topology is not None:
            self.topology.close()
