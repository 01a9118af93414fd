"""The web process's gunicorn worker: threads that never wait on a slow client.

gunicorn's ``gthread`` worker hands a connection to a pool thread as soon as
it has a byte to read; the thread then blocks reading headers and body at
whatever pace the client sends. Sixteen clients dripping a byte a second hold
sixteen threads, and signed deliveries queue behind them (measured: 0 of 20
acknowledged under 200 slow connections). ``BufferedThreadWorker`` reads every
request in the worker's event loop instead, without blocking, and hands it to
a thread only once the whole request (headers and a ``Content-Length`` body,
or a chunked body up to its last chunk) is in memory, as a buffering proxy
would. A pool thread therefore only ever runs the application.

Deadlines, enforced by the event loop (the connection is closed when one passes):

- ``WEB_HEADER_TIMEOUT`` seconds (default 10) from the connection's first
  byte (or from accept) to the end of the headers;
- ``WEB_BODY_TIMEOUT`` seconds (default 20) from the end of the headers to
  the end of the body (a body shorter than its ``Content-Length`` ends here);
- idle kept-alive connections: gunicorn's ``--keep-alive`` (they cost no thread).

A worker accepts only while one of its threads is free, so a new connection
waits in the kernel's queue for whichever worker can run it, as with sync
workers. The Procfile also runs with ``--keep-alive 0``: a kept-alive
connection stays with the worker that accepted it, and every request on it
waits out that worker's stalls (GIL, a preempted process) while the other
worker may be idle (measured: 11/5 connections between 2 workers; bare
Flask p99 66-128 ms kept alive, 16-23 ms closed after each answer).

Requests too large to buffer (a body over ``AISTATS_MAX_BODY_BYTES``, headers
over 64 KiB) go to a thread at once so the application can refuse them (413,
400); their reads there are bounded by the body deadline too. TLS and HTTP/2
connections keep gunicorn's own handling (TLS is terminated in front of this
service). Use: ``gunicorn --worker-class aistats_hooks.web.serving.BufferedThreadWorker``.
"""

from __future__ import annotations

import os
import re
import select
import selectors
import socket
import sys
import time
from functools import partial

from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import TConn, ThreadWorker

from ..config import MAX_BODY_BYTES, exit_config_error, int_setting
from ..errors import ConfigError

HEADER_LIMIT = 64 * 1024
# The GIL hand-over interval in a web worker (Python's default is 5 ms). A thread whose
# Redis answer arrived waits for the GIL up to this long behind a thread parsing or
# compressing; measured on 2 cores, 16 connections: 0.5 ms gave ~5-10% more acks/s.
SWITCH_INTERVAL = 0.0005
SWEEP_EVERY = 0.25
RECV_SIZE = 64 * 1024
_HEADERS_END = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([^\r\n]*)", re.I)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r\n]*chunked", re.I)
_EXPECT = re.compile(rb"\r\nexpect:[ \t]*100-continue[ \t]*(?=\r\n)", re.I)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# What ``request_state`` says about the bytes buffered so far.
WAIT_HEADERS, WAIT_BODY, COMPLETE, HAND_OFF = "wait_headers", "wait_body", "complete", "hand_off"


def request_state(buf: bytes | bytearray, max_body: int) -> str:
    """Tell whether ``buf`` (the start of one HTTP/1.x request) is complete enough to hand to a thread.

    ``HAND_OFF``: the request cannot or need not be buffered (too large, malformed framing);
    the parser and the application answer it from the socket.
    """
    end = buf.find(_HEADERS_END)
    if end < 0:
        return HAND_OFF if len(buf) > HEADER_LIMIT else WAIT_HEADERS
    head = bytes(buf[: end + 2])
    body = len(buf) - end - 4
    if _CHUNKED.search(head):
        if body > max_body:
            return HAND_OFF
        # The last chunk and an empty trailer: "0\r\n\r\n" (a body that merely
        # looks like it goes to a thread early; its reads there are bounded).
        tail = bytes(buf[end + 4:])
        return COMPLETE if tail == b"0\r\n\r\n" or tail.endswith(b"\r\n0\r\n\r\n") else WAIT_BODY
    lengths = _CONTENT_LENGTH.findall(head)
    if not lengths:
        return COMPLETE
    raw = lengths[0].strip()
    if len(lengths) > 1 or not raw.isdigit() or int(raw) > max_body:
        return HAND_OFF
    return COMPLETE if body >= int(raw) else WAIT_BODY


def read_limits(env) -> tuple[int, int, int]:
    """Return (header timeout s, body timeout s, largest body buffered) from ``env``; ``ConfigError`` if malformed."""
    return (int_setting(env, "WEB_HEADER_TIMEOUT", 10, low=1, high=3600),
            int_setting(env, "WEB_BODY_TIMEOUT", 20, low=1, high=3600),
            int_setting(env, "AISTATS_MAX_BODY_BYTES", MAX_BODY_BYTES, low=1024, high=64 * MAX_BODY_BYTES))


class _DeadlineSocket:
    """The parser's view of a socket: every ``recv`` gives up at one deadline.

    gunicorn sets its sockets blocking without a timeout before parsing; a
    request handed off unbuffered must still not hold its thread past the
    body deadline. Running out looks to gunicorn like the client going away.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.deadline: float | None = None

    def recv(self, size: int) -> bytes:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self._sock], [], [], left)[0]:
                raise NoMoreData(b"")
        return self._sock.recv(size)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class BufferedThreadWorker(ThreadWorker):
    """gthread, with every request read in the event loop before a thread sees it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout, self.body_timeout, self.max_body = read_limits(os.environ)
        # Connections being read: conn -> absolute deadline (monotonic).
        self.reading: dict[TConn, float] = {}
        self._next_sweep = 0.0
        # Requests given to the thread pool and not yet finished (running or queued for a thread).
        self.busy = 0

    def init_process(self) -> None:
        sys.setswitchinterval(SWITCH_INTERVAL)
        super().init_process()

    @classmethod
    def check_config(cls, cfg, log) -> None:
        """In the master, before any worker forks: a bad limit is one line and exit 2, not a crash loop."""
        super().check_config(cfg, log)
        try:
            read_limits(os.environ)
        except ConfigError as exc:
            exit_config_error(exc)

    def _buffering(self) -> bool:
        # Asked three times a request; each gunicorn setting read is a lookup through Config.__getattr__
        # (~3% of a worker's GIL time under load, py-spy --gil), and the settings do not change.
        buffering = self.__dict__.get("_buffering_cached")
        if buffering is None:
            buffering = self._buffering_cached = not (
                self.cfg.is_ssl or "h2" in (getattr(self.cfg, "http_protocols", None) or ()))
        return buffering

    # -- the event loop's side ---------------------------------------------------------

    def set_accept_enabled(self, enabled: bool) -> None:
        """Accept only while a thread is free: a busy worker leaves new connections to an idle one.

        gunicorn's loop asks to enable accepting on every turn while under ``worker_connections``;
        connections still being read (slow clients) hold no thread and do not count.
        """
        if enabled and self.busy >= self.cfg.threads and self._buffering():
            enabled = False
        super().set_accept_enabled(enabled)

    def enqueue_req(self, conn) -> None:
        self.busy += 1
        if self.busy >= self.cfg.threads and self._accepting and self._buffering():
            self.set_accept_enabled(False)
        super().enqueue_req(conn)

    def accept(self, listener) -> None:
        if not self._buffering():
            return super().accept(listener)
        try:
            client, addr = listener.accept()
        except OSError:  # EAGAIN, ECONNABORTED: another worker took it, or the client left
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client, addr, listener.getsockname())  # non-blocking
        conn.rbuf = bytearray()
        self._read_later(conn, time.monotonic() + self.header_timeout)

    def on_client_socket_readable(self, conn, client) -> None:
        """A kept-alive connection sent its next request: read it here, not in a thread."""
        if not self._buffering():
            return super().on_client_socket_readable(conn, client)
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        conn.rbuf = bytearray()
        self._read_later(conn, time.monotonic() + self.header_timeout, registered=False)
        self._on_readable(conn, client)

    def _read_later(self, conn, deadline: float, *, registered: bool = False) -> None:
        self.reading[conn] = deadline
        if not registered:
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn, _client) -> None:
        if conn not in self.reading:
            return
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return self._drop(conn)
        if not data:
            return self._drop(conn)
        had_headers = _HEADERS_END in conn.rbuf
        conn.rbuf += data
        state = request_state(conn.rbuf, self.max_body)
        if state in (COMPLETE, HAND_OFF):
            return self._dispatch(conn)
        if state == WAIT_BODY and not had_headers:
            self.reading[conn] = time.monotonic() + self.body_timeout
            self._answer_expect(conn)

    def _answer_expect(self, conn) -> None:
        """A client waiting for ``100 Continue`` gets it here, and the parser never sees the Expect."""
        end = conn.rbuf.find(_HEADERS_END)
        head, rest = bytes(conn.rbuf[: end + 2]), bytes(conn.rbuf[end + 2:])
        stripped = _EXPECT.sub(b"", head)
        if stripped != head:
            conn.rbuf = bytearray(stripped + rest)
            try:
                conn.sock.send(_CONTINUE)
            except OSError:
                pass

    def _dispatch(self, conn) -> None:
        """The request is buffered: give the bytes to the parser and the connection to a thread."""
        self.reading.pop(conn, None)
        self.poller.unregister(conn.sock)
        data, conn.rbuf = bytes(conn.rbuf), None
        try:
            conn.init()
        except OSError:
            self.nr_conns -= 1
            conn.close()
            return
        unreader = conn.parser.unreader
        if not isinstance(unreader.sock, _DeadlineSocket):
            unreader.sock = _DeadlineSocket(unreader.sock)
        unreader.sock.deadline = time.monotonic() + self.body_timeout
        unreader.unread(data)
        conn.data_ready = True
        self.enqueue_req(conn)

    def _drop(self, conn) -> None:
        self.reading.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        # The loop runs once per batch of events (thousands a second under load): scan the
        # deadlines a few times a second, not on every turn.
        if now < self._next_sweep and self.alive:
            return
        self._next_sweep = now + SWEEP_EVERY
        late = [conn for conn, deadline in self.reading.items() if deadline <= now or not self.alive]
        for conn in late:
            self._drop(conn)

    def finish_request(self, conn, fs) -> None:
        """After a response: a request the client already pipelined is read like any other.

        The thread is free again; the loop's next turn accepts again if it had stopped.
        """
        self.busy -= 1
        if self._buffering() and self.alive and not fs.cancelled() and fs.exception() is None and fs.result() \
                and conn.parser is not None and conn.parser.unreader.buf.getvalue():
            conn.rbuf = bytearray(conn.parser.unreader.take_buffered())
            conn.sock.setblocking(False)
            if request_state(conn.rbuf, self.max_body) in (COMPLETE, HAND_OFF):
                self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
                return self._dispatch(conn)
            return self._read_later(conn, time.monotonic() + self.header_timeout)
        return super().finish_request(conn, fs)
