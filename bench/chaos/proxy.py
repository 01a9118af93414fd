"""A tapping proxy between the sandbox's deliveries and the receiver.

The sandbox posts every webhook here; the proxy forwards the exact bytes and
the delivery headers to gunicorn and hands the answer back unchanged, so the
sandbox sees the receiver's real status (and retries on it). On the way it
learns what the run must know: which event ids the receiver acknowledged,
which deliveries were forged (signed with no secret we ever used), and a
sample of acknowledged deliveries to replay later.
"""

from __future__ import annotations

import json
import random
import threading

import httpx
from werkzeug.serving import WSGIRequestHandler, make_server

from aistats_hooks.errors import SignatureError
from aistats_hooks.rules.signatures import verify_signature

from .record import Record

FORWARD = ("content-type", "user-agent")


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # noqa: D102 - thousands of requests
        pass


class TapProxy:
    """Serve on a loopback port; forward to ``target`` (the receiver's URL)."""

    def __init__(self, target: str, secrets: list[str], record: Record, *, capture_rate: float = 0.05,
                 seed: int = 0) -> None:
        self.target = target
        self.secrets = secrets
        self.record = record
        self.capture_rate = capture_rate
        self._rng = random.Random(seed)
        self._client = httpx.Client(timeout=15.0, limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_Quiet)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="chaos-proxy", daemon=True)

    def start(self) -> TapProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def _legit(self, body: bytes, headers: dict[str, str]) -> bool:
        """Signed with one of the run's secrets (age ignored: a replay is still legit)?"""
        try:
            verify_signature(body, headers, self.secrets, tolerance=10**9)
            return True
        except SignatureError:
            return False

    def _app(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {}
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                name = key[5:].replace("_", "-").lower()
                if name.startswith("x-phaseo-") or name in FORWARD:
                    headers[name] = value
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        event_id = headers.get("x-phaseo-event-id")
        try:
            batch_id = json.loads(body)["data"]["id"]
        except (ValueError, KeyError, TypeError):
            batch_id = None
        legit = self._legit(body, headers)
        try:
            resp = self._client.post(self.target + "/webhooks/aistats", content=body, headers=headers)
            status, answer = resp.status_code, resp.content
        except httpx.HTTPError:
            status, answer = None, b""
        self.record.answer(status, answer, hostile=None if legit else "sandbox_bad_signature",
                           event_id=event_id, batch_id=batch_id)
        if legit and status is not None and 200 <= status < 300 and event_id and self._rng.random() < self.capture_rate:
            self.record.capture(event_id, body, headers)
        if status is None:
            status, answer = 502, b'{"error":"receiver unreachable (chaos proxy)"}'
        start_response(f"{status} X", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))])
        return [answer]
