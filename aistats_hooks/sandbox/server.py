"""Run the sandbox gateway on a real port: HTTP, clock and delivery threads."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import create_app
from . import persist
from .latency import Delayed
from .delivery import Deliverer
from .state import Gateway

# Real seconds between clock ticks; a heap makes each tick cheap.
TICK_SECONDS = 0.025
# Real seconds between writes of the state file (when there is one).
SAVE_SECONDS = 2.0


class QuietRequestHandler(WSGIRequestHandler):
    """Serve without an access-log line per request (benchmarks make thousands)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log nothing for a served request; errors still reach the log."""


class SandboxServer:
    """The sandbox gateway on a loopback port, in background threads."""

    def __init__(
        self,
        api_key: str,
        speed: float = 1.0,
        seed: int | None = None,
        faults: str | Mapping[str, float] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        delivery_workers: int = 8,
        slow_seconds: float = 2.0,
        delivery_timeout: float = 30.0,  # the gateway's DEFAULT_WEBHOOK_DELIVERY_TIMEOUT_MS
        tick_seconds: float = TICK_SECONDS,
        log_requests: bool = False,
        state_file: str | Path | None = None,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        **gateway_options: Any,
    ) -> None:
        self.host = host
        self.port = port
        self.tick_seconds = tick_seconds
        self.log_requests = log_requests
        # gateway_options: poll_seconds, fast_poll_seconds, batches_enabled, insufficient_funds,
        # results_unavailable, allow_inline_webhooks, accept_unknown_files, management_key, results_route (see Gateway).
        self.gateway = Gateway(api_key, speed=speed, seed=seed, faults=faults, slow_seconds=slow_seconds,
                               **gateway_options)
        self.deliverer = Deliverer(self.gateway, workers=delivery_workers, timeout=delivery_timeout)
        self.gateway.on_events = self.deliverer.submit
        # Every API answer waits latency_ms (+ up to jitter_ms): a real gateway is 50-200 ms away.
        # Webhook deliveries are sent by the Deliverer, outside this wrapper, so they are not delayed.
        self.api = create_app(self.gateway)
        self.app = Delayed(self.api, latency_ms, jitter_ms, seed=seed,
                           count=lambda second: self.gateway.stats.incr("api_calls_by_second", second))
        # Where the state is kept across restarts (make run: .data/sandbox-state.pickle); None keeps nothing.
        self.state_file = Path(state_file) if state_file else None
        self.restored = persist.load(self.gateway, self.state_file) if self.state_file else 0
        self._http: BaseWSGIServer | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        """Return the root URL, e.g. http://127.0.0.1:PORT."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def management_key(self) -> str:
        """Return the key /v1/webhook-endpoints accepts (phaseo_v1_mk_...)."""
        return self.gateway.management_key

    @property
    def base_url(self) -> str:
        """Return the API base URL an SDK is pointed at."""
        return self.url + "/v1"

    def start(self) -> SandboxServer:
        """Bind the port and start the HTTP, clock and delivery threads."""
        if self._http is not None:
            raise RuntimeError("SandboxServer is already started")
        handler = WSGIRequestHandler if self.log_requests else QuietRequestHandler
        self._http = make_server(self.host, self.port, self.app, threaded=True, request_handler=handler)
        self.port = self._http.server_port
        self.gateway.public_url = self.url
        self._stop.clear()
        self.deliverer.start()
        http = self._http
        # A short poll interval makes stop() quick: tests start many servers.
        self._spawn("sandbox-http", lambda: http.serve_forever(poll_interval=0.05))
        self._spawn("sandbox-clock", self._run_clock)
        return self

    def stop(self) -> None:
        """Stop every thread and release the port."""
        self._stop.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        self.deliverer.stop()
        self.save()

    def save(self) -> None:
        """Write the state file, if this server keeps one."""
        if self.state_file is not None:
            persist.save(self.gateway, self.state_file)

    def __enter__(self) -> SandboxServer:
        return self.start() if self._http is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, name: str, target) -> None:
        """Start a daemon thread and keep it for stop()."""
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _run_clock(self) -> None:
        """Tick the gateway until stopped."""
        last_save = time.monotonic()
        while not self._stop.wait(self.tick_seconds):
            self.gateway.tick()
            if self.state_file is not None and time.monotonic() - last_save >= SAVE_SECONDS:
                last_save = time.monotonic()
                try:
                    self.save()
                except OSError as exc:  # a full disk must not stop the clock; the next save retries
                    print(f"sandbox: could not save {self.state_file}: {exc}", file=sys.stderr, flush=True)
