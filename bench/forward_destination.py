"""A receiver of forwarded messages for tests and `make chaos`: verifies each one with the official library.

It answers 503 while ``down`` is true or for its first
``fail_first`` requests, then 200; every request is recorded with whether its
signature verified, so a test can check delivery, order and deduplication.
"""

from __future__ import annotations

import json
import threading

from flask import Flask, request
from standardwebhooks import Webhook
from werkzeug.serving import WSGIRequestHandler, make_server


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # thousands of lines under chaos
        pass


class Destination:
    """A loopback HTTP receiver that verifies Standard Webhooks signatures."""

    def __init__(self, secret: str, *, fail_first: int = 0, status: int = 200) -> None:
        self.webhook = Webhook(secret)
        self.fail_first = fail_first
        self.status = status
        self.down = False
        self.requests: list[dict] = []  # every request: id, type, batch, verified, answered
        self._lock = threading.Lock()
        app = Flask(__name__)
        app.add_url_rule("/hook", view_func=self._receive, methods=["POST"])
        self.server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, name="forward-destination", daemon=True).start()

    def _receive(self):
        body = request.get_data()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            payload = self.webhook.verify(body, headers)
            verified = True
        except Exception:  # noqa: BLE001 - any failure to verify is what the test counts
            payload, verified = _loads(body), False
        with self._lock:
            failing = self.down or len(self.requests) < self.fail_first
            answer = 503 if failing else self.status
            self.requests.append({"id": headers.get("webhook-id"), "type": payload.get("type"),
                                  "batch_id": (payload.get("data") or {}).get("id"), "verified": verified,
                                  "answered": answer, "payload": payload, "traceparent": headers.get("traceparent")})
        # A redirect points back here: a sender that followed it would send a second request.
        return "", answer, ({"Location": self.url} if 300 <= answer < 400 else {})

    def delivered(self) -> list[dict]:
        """The requests answered 2xx, first one per webhook-id (the receiver's deduplication), in arrival order."""
        seen: set[str] = set()
        out = []
        with self._lock:
            for r in self.requests:
                if 200 <= r["answered"] < 300 and r["id"] not in seen:
                    seen.add(r["id"])
                    out.append(r)
        return out

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def _loads(body: bytes) -> dict:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
