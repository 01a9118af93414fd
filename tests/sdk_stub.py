"""A scripted HTTP server on a real loopback port, for the SDK's happy paths over real HTTP.

Each route is ``(method, path) -> respond(request) -> Reply``; every request is recorded.
A ``Reply`` body may be bytes or an iterable of chunks (sent chunked, flushed one by one),
and ``cut_after`` closes the connection mid-body, a fault a real server can produce.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    cut_after: int | None = None  # chunks sent before the connection is dropped

    @classmethod
    def json(cls, payload, status: int = 200, **headers: str) -> Reply:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **headers})


class StubGateway:
    """Serve scripted replies until ``stop``; use as a context manager."""

    def __init__(self, routes: dict[tuple[str, str], Callable[[Seen], Reply]]) -> None:
        self.routes = routes
        self.seen: list[Seen] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                            self.rfile.read(length))
                stub.seen.append(seen)
                respond = stub.routes.get((self.command, self.path.split("?")[0]))
                reply = respond(seen) if respond else Reply.json({"error": "not_found"}, 404)
                self._send(reply)

            def _send(self, reply: Reply):
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if isinstance(reply.body, bytes):
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for number, chunk in enumerate(reply.body):
                    if reply.cut_after is not None and number >= reply.cut_after:
                        self.close_connection = True
                        self.wfile.flush()
                        return  # no terminating chunk: the client sees a cut body
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client that stops reading (an over-long line) breaks the pipe: expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> StubGateway:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
