"""A programmable stand-in for the gateway's retrieve endpoint, served over real HTTP.

For the faults the sandbox does not make on demand (a 401, a retrieve that
blocks while a test acts), tests script the answers here.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from flask import Flask, jsonify

from tests.helpers import Served


class Upstream:
    """Answers GET /v1/batches/<id> from per-batch scripts; counts calls and overlap."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[tuple[int, dict, dict]]] = defaultdict(list)
        self.calls: dict[str, int] = defaultdict(int)
        self.active = 0
        self.max_active = 0
        self.on_retrieve = None
        self._lock = threading.Lock()
        app = Flask(__name__)
        app.add_url_rule("/v1/batches/<batch_id>", view_func=self._retrieve)
        self.served = Served(app)
        self.base_url = self.served.url + "/v1"

    def answer(self, batch_id: str, *answers: tuple) -> None:
        """Script the answers for ``batch_id``: (status, body[, headers]); the last one repeats."""
        self.scripts[batch_id] = [(a[0], a[1], a[2] if len(a) > 2 else {}) for a in answers]

    def _retrieve(self, batch_id: str):
        with self._lock:
            self.calls[batch_id] += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            script = self.scripts.get(batch_id) or [(404, {"error": {"message": "not found"}}, {})]
            status, body, headers = script.pop(0) if len(script) > 1 else script[0]
        try:
            if self.on_retrieve:
                self.on_retrieve(batch_id)
            return jsonify(body), status, headers
        finally:
            with self._lock:
                self.active -= 1

    def stop(self) -> None:
        """Stop the server."""
        self.served.stop()
