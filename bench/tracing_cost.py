"""Phase tracing: acknowledgements with tracing on (OTLP to a local collector) beside the same with it off.

The Procfile's web command serves the receiver twice, one with ``OTEL_TRACES_EXPORTER=otlp`` to
a local collector that drops what it gets, and one without; wrk sends the same kind of
load to each, alternating, best round kept. Target: on at least 0.8x off. Off is the code the
ingest phase measures (every tracing helper returns at its first line).
"""

from __future__ import annotations

import threading

from . import procs
from .context import Bench, Row
from .ingest import _load

TARGET = 0.8


def _web(bench: Bench, name: str, port: int, env: dict) -> procs.Proc:
    proc = procs.Proc(name, procs.procfile_web_argv("app:app", port, env), env, bench.folder)
    proc.start()  # the console exporter's spans go to the process's log file
    procs.wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    return proc


class _Collector:
    """A local OTLP/HTTP endpoint that takes every export and drops it (its own thread, not the server's CPU)."""

    def __init__(self) -> None:
        from werkzeug.serving import WSGIRequestHandler, make_server

        class Quiet(WSGIRequestHandler):
            def log_request(self, *args, **kwargs) -> None:
                pass

        def app(environ, start_response):
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            start_response("200 OK", [("Content-Type", "application/x-protobuf"), ("Content-Length", "0")])
            return [b""]

        self.server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, name="otlp-sink", daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run(bench: Bench, seconds: float = 6.0, rounds: int = 2) -> dict:
    base = bench.env()
    sink = _Collector()
    off_port, on_port = procs.free_port(), procs.free_port()
    off = _web(bench, "web-tracing-off", off_port, {**base, "OTEL_TRACES_EXPORTER": "none"})
    on = _web(bench, "web-tracing-on", on_port, {**base, "OTEL_TRACES_EXPORTER": "otlp",
                                                 "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
                                                 "OTEL_SERVICE_NAME": "aistats-hooks-bench"})
    best = {"off": 0.0, "on": 0.0}
    try:
        for port in (off_port, on_port):
            _load(bench, port, "unique", f"trwarm{port}", 2)
        for r in range(rounds):
            for name, port, proc in (("off", off_port, off), ("on", on_port, on)):
                result, _ = _load(bench, port, "unique", f"tr{name}{r}", seconds, proc.pid)
                best[name] = max(best[name], result["rps"])
                bench.flush()
    finally:
        on.stop()
        off.stop()
        sink.stop()
    ratio = best["on"] / best["off"] if best["off"] else 0.0
    bench.add(Row("tracing", "acks/s with tracing on (OTLP to a local collector) vs off",
                  f"{best['on']:,.0f}/s vs {best['off']:,.0f}/s ({ratio:.2f}x)", f">= {TARGET}x off",
                  ratio >= TARGET, "the Procfile's web command for both, the same wrk load, best of the rounds"))
    return best
