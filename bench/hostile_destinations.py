"""Forwarding destinations that misbehave, for tests, ``make bench`` and ``make chaos``: raw loopback sockets.

- ``hang``: reads the request and never answers (the connection stays open);
- ``drip``: answers one byte a second, forever (every read returns, so a per-read timeout never fires);
- ``huge``: answers 200 with a body of ``huge_bytes`` (400 MB by default), as fast as the client reads.

Each counts the requests it has read (``requests``), the bytes it got to send (``sent``) and the
connections it is done with (``finished``): a test waits for an attempt to start, or checks that the
sender stopped reading early.
"""

from __future__ import annotations

import socket
import socketserver
import threading

MODES = ("hang", "drip", "huge")
HUGE_BYTES = 400 * 1024 * 1024
_CHUNK = b"0" * 65536


class Hostile:
    """One loopback destination misbehaving in ``mode``."""

    def __init__(self, mode: str, *, huge_bytes: int = HUGE_BYTES, drip_interval: float = 1.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode, self.huge_bytes, self.drip_interval = mode, huge_bytes, drip_interval
        self.requests = 0
        self.sent = 0
        self.finished = 0  # connections whose handling ended (the sender closed, or everything was sent)
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/{mode}"
        threading.Thread(target=self.server.serve_forever, name=f"hostile-{mode}", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._answer(conn)
        finally:
            with self._lock:
                self.finished += 1

    def _answer(self, conn: socket.socket) -> None:
        if not _read_request(conn):
            return
        with self._lock:
            self.requests += 1
        try:
            if self.mode == "hang":
                self.stopping.wait()
            elif self.mode == "drip":
                answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Drip: " + b"x" * 1_000_000
                for n in range(len(answer)):
                    if self.stopping.wait(self.drip_interval):
                        return
                    conn.sendall(answer[n:n + 1])
                    self._count(1)
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Content-Length: %d\r\n\r\n" % self.huge_bytes)
                left = self.huge_bytes
                while left > 0 and not self.stopping.is_set():
                    piece = _CHUNK[:min(left, len(_CHUNK))]
                    conn.sendall(piece)
                    self._count(len(piece))
                    left -= len(piece)
        except OSError:
            return  # the sender gave up: what it is meant to do

    def _count(self, n: int) -> None:
        with self._lock:
            self.sent += n

    def stop(self) -> None:
        """Stop serving; open connections are dropped."""
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def _read_request(conn: socket.socket) -> bool:
    """Read one request (headers and a Content-Length body); False if the client went away."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        body += chunk
    return True
