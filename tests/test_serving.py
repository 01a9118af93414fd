"""The web process's server: slow clients hold no thread, deadlines close them, requests still framed right.

The real Procfile web command (gunicorn with ``BufferedThreadWorker``) on a
real Redis; slow clients from ``bench.slowclients`` on loopback.
"""

from __future__ import annotations

import socket
import subprocess
import time
from http.client import HTTPConnection
from pathlib import Path

import pytest

from aistats_hooks.web.serving import COMPLETE, HAND_OFF, WAIT_BODY, WAIT_HEADERS, request_state
from bench import procs
from bench.slowclients import Dripper, probe
from tests.helpers import make_event, signed

ROOT = Path(__file__).resolve().parents[1]
SECRET = "whsec_test_secret"


def test_request_state_frames_what_it_has():
    head = b"POST /w HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
    assert request_state(b"POST /w HTTP/1.1\r\nHo", 1024) == WAIT_HEADERS
    assert request_state(head + b"abc", 1024) == WAIT_BODY
    assert request_state(head + b"abcde", 1024) == COMPLETE
    assert request_state(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1024) == COMPLETE
    chunked = b"POST /w HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert request_state(chunked + b"3\r\nabc\r\n", 1024) == WAIT_BODY
    assert request_state(chunked + b"3\r\nabc\r\n0\r\n\r\n", 1024) == COMPLETE
    # Too large or malformed framing: to a thread at once, where the app or parser refuses it.
    assert request_state(b"POST /w HTTP/1.1\r\nContent-Length: 2048\r\n\r\n", 1024) == HAND_OFF
    assert request_state(b"POST /w HTTP/1.1\r\nContent-Length: x\r\n\r\n", 1024) == HAND_OFF
    assert request_state(b"POST /w HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 1024) == HAND_OFF
    assert request_state(b"GET /" + b"a" * 70_000, 1024) == HAND_OFF


@pytest.fixture
def web(settings, tmp_path):
    """The Procfile's web command: one worker, two threads, long deadlines unless a test says otherwise."""
    started = []

    def start(*args: str, **extra: str) -> int:
        """Start it (``args``: gunicorn options appended, the last one given wins) and return its port."""
        port = procs.free_port()
        env = procs.service_env(
            REDIS_URL=settings.redis_url, AISTATS_WEBHOOK_SECRET=SECRET, QUERY_API_TOKEN="qt_serving_test_token",
            AISTATS_KEY_PREFIX=settings.key_prefix, AISTATS_QUEUE=settings.queue_name,
            **{"WEB_CONCURRENCY": "1", "WEB_THREADS": "2", "WEB_HEADER_TIMEOUT": "30", "WEB_BODY_TIMEOUT": "30",
               **extra},
        )
        proc = procs.Proc("web", procs.procfile_web_argv("app:app", port, env) + list(args), env, tmp_path)
        started.append(proc.start())
        procs.wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        return port

    yield start
    for proc in started:
        proc.stop()


def _post(port: int, batch: str, **headers: str) -> int:
    body, signed_headers = signed(make_event(batch))
    conn = HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/webhooks/aistats", body=body, headers={**signed_headers, **headers})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_slow_clients_hold_no_thread(web):
    port = web()
    # 60 connections dripping headers, stalled mid-body and idle, against 2 threads whose deadlines are 30 s:
    # a thread waiting on any one of them would leave the probes unanswered within their 5 s timeout.
    with Dripper(port, 60, ("headers", "body", "idle"), interval=0.5, seconds=60) as dripper:
        time.sleep(1.5)
        result = probe(port, SECRET, count=10, pause=0.05, timeout=5)
    assert dripper.opened >= 60 and dripper.closed_by_server == 0
    assert result["acked"] == 10, result["failures"]


def _closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """Read until the server closes; return what it sent, or None if still open after ``seconds``."""
    sock.settimeout(seconds)
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except TimeoutError:
        return None
    return got


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_header_and_body_deadlines_close_the_connection(web):
    port = web(WEB_HEADER_TIMEOUT="1", WEB_BODY_TIMEOUT="1")
    dripping = socket.create_connection(("127.0.0.1", port))
    dripping.sendall(b"POST /webhooks/aistats HTTP/1.1\r\nHo")
    short_body = socket.create_connection(("127.0.0.1", port))
    short_body.sendall(b"POST /webhooks/aistats HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"id\":")
    idle = socket.create_connection(("127.0.0.1", port))
    # Closed by the deadline (well before these generous limits), without an answer.
    assert _closed_within(dripping, 15) == b""
    assert _closed_within(short_body, 15) == b""
    assert _closed_within(idle, 15) == b""
    assert _post(port, "batch_after_deadlines") == 202


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_keep_alive_pipelining_and_expect_continue(web):
    port = web("--keep-alive", "5")  # the Procfile turns keep-alive off; the worker still serves it when set
    conn = HTTPConnection("127.0.0.1", port, timeout=5)
    for batch in ("batch_ka1", "batch_ka2"):  # two requests on one kept-alive connection
        body, headers = signed(make_event(batch))
        conn.request("POST", "/webhooks/aistats", body=body, headers=headers)
        response = conn.getresponse()
        assert response.status == 202 and response.read()
    conn.close()

    def raw(batch: str, extra: str = "") -> tuple[bytes, bytes]:
        body, headers = signed(make_event(batch))
        lines = ["POST /webhooks/aistats HTTP/1.1", "Host: x", f"Content-Length: {len(body)}", *extra.split("|")]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return "\r\n".join(line for line in lines if line).encode() + b"\r\n\r\n", body

    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    (h1, b1), (h2, b2) = raw("batch_pipe1"), raw("batch_pipe2", "Connection: close")
    sock.sendall(h1 + b1 + h2 + b2)  # pipelined: both framed from one buffer
    answers = _closed_within(sock, 10)
    assert answers is not None and answers.count(b"HTTP/1.1 202") == 2

    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    head, body = raw("batch_expect", "Expect: 100-continue|Connection: close")
    sock.sendall(head)
    assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
    sock.sendall(body)
    answer = _closed_within(sock, 10)
    assert answer is not None and answer.startswith(b"HTTP/1.1 202") and b"100 Continue" not in answer


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_malformed_deadline_is_one_line_exit_2(settings):
    env = procs.service_env(REDIS_URL=settings.redis_url, AISTATS_WEBHOOK_SECRET=SECRET, WEB_HEADER_TIMEOUT="soon")
    argv = procs.procfile_web_argv("app:app", procs.free_port(), env)
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=50)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "aistats-hooks: configuration error: WEB_HEADER_TIMEOUT: expected a whole number from 1 to 3600, got 'soon'"
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_oversized_and_chunked_bodies(web):
    port = web()
    # Over AISTATS_MAX_BODY_BYTES: handed to a thread at once and refused from Content-Length, unread.
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"POST /webhooks/aistats HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n"
                 b"Connection: close\r\n\r\n" + b"{" * 1000)
    answer = _closed_within(sock, 10)
    assert answer is not None and answer.startswith(b"HTTP/1.1 413")
    # A chunked delivery is buffered up to its last chunk, then acknowledged.
    body, headers = signed(make_event("batch_chunked"))
    head = ["POST /webhooks/aistats HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    half = len(body) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:])) + b"0\r\n\r\n"
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall("\r\n".join(head).encode() + b"\r\n\r\n" + chunks)
    answer = _closed_within(sock, 10)
    assert answer is not None and answer.startswith(b"HTTP/1.1 202"), answer


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_procfile_closes_after_each_answer(web):
    # --keep-alive 0: a kept-alive connection would stay with one worker and wait out its stalls.
    port = web()
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    body, headers = signed(make_event("batch_close"))
    head = ["POST /webhooks/aistats HTTP/1.1", "Host: x", f"Content-Length: {len(body)}"]
    sock.sendall("\r\n".join(head + [f"{k}: {v}" for k, v in headers.items()]).encode() + b"\r\n\r\n" + body)
    answer = _closed_within(sock, 10)
    assert answer is not None and answer.startswith(b"HTTP/1.1 202") and b"\r\nConnection: close\r\n" in answer


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_worker_with_no_free_thread_leaves_new_connections_to_another(web):
    port = web(WEB_CONCURRENCY="2", WEB_THREADS="1")
    # A chunked body whose buffer ends like a last chunk is handed to a thread, which then waits for the
    # rest of its first chunk (256 bytes announced, 12 sent) until the 30 s body deadline: one worker's only
    # thread is held.
    held = socket.create_connection(("127.0.0.1", port), timeout=5)
    held.sendall(b"POST /webhooks/aistats HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                 b"x-phaseo-signature: v1=00\r\n\r\n100\r\naaaaa\r\n0\r\n\r\n")
    time.sleep(0.5)
    # Had the held worker gone on accepting, about half of these would queue behind its thread for 30 s.
    started = time.monotonic()
    statuses = [_post(port, f"batch_free_{i}") for i in range(12)]
    assert statuses == [202] * 12 and time.monotonic() - started < 5
    assert _closed_within(held, 0.1) is None  # still held: the requests above went to the other worker
    held.close()
