"""Signed webhook deliveries for the load: unique batches and progress storms.

Bodies are built from the sample delivery (a gateway-shaped batch object)
by substituting ids into one serialized template, then signed with the
receiver's secret. Signatures are time-bound (300 s), so build them right
before each run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from aistats_hooks.rules.signatures import sign_headers

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = (ROOT / "tests" / "fixtures" / "batch_completed.json",)
PLACEHOLDER = "BENCHBATCHID"
# The storm: ten progress buckets of one batch (5 to 95), distinct events for the ack path to absorb
# (the real gateway sends no batch progress deliveries: docs/protocol.md).
STORM_KEYS = tuple(f"batch.progress:{p}" for p in range(5, 100, 10))

Delivery = tuple[bytes, dict[str, str]]


def sample() -> dict:
    """Return the sample delivery body."""
    for path in FIXTURES:
        if path.exists():
            return json.loads(path.read_text())
    raise FileNotFoundError("batch_completed.json fixture not found")


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in key)


class Templates:
    """Serialized delivery bodies with a placeholder batch id, one per delivery key."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[bytes, str]] = {}
        self._base = sample()

    def body(self, batch_id: str, event_type: str, key: str) -> tuple[bytes, str]:
        """Return (body, event id) of ``event_type``/``key`` for ``batch_id``."""
        if key not in self._cache:
            event = json.loads(json.dumps(self._base))
            event["id"] = f"evt_batch_{PLACEHOLDER}_{_safe(key)}"
            event["type"] = event_type
            event["delivery"]["key"] = key
            data = event["data"]
            data["id"] = PLACEHOLDER
            for url in ("polling_url", "websocket_url"):
                data[url] = data[url].replace("batch_7f3a2c", PLACEHOLDER)
            if event_type == "batch.progress":
                pct = int(key.rsplit(":", 1)[1])
                data.update(status="in_progress", lifecycle_status="running", output_file_id=None,
                            request_counts={"total": 100, "completed": pct, "failed": 0})
                data["billing"] = dict(data["billing"], state="pending", charged=False, billed_at=None)
            self._cache[key] = (json.dumps(event, separators=(",", ":")).encode(), event["id"])
        template, event_id = self._cache[key]
        return template.replace(PLACEHOLDER.encode(), batch_id.encode()), event_id.replace(PLACEHOLDER, batch_id)

    def signed(self, secret: str, batch_id: str, event_type: str, key: str, *, timestamp: int | None = None) -> Delivery:
        """Return one signed delivery (body, headers)."""
        body, event_id = self.body(batch_id, event_type, key)
        headers = sign_headers(secret, body, timestamp=timestamp, event_id=event_id, event_type=event_type,
                               delivery_key=key)
        return body, headers


def unique(secret: str, run: str, count: int) -> Iterator[Delivery]:
    """Yield ``count`` deliveries, each the terminal event of a new batch."""
    templates = Templates()
    for i in range(count):
        yield templates.signed(secret, f"batch_{run}_{i:07d}", "batch.completed", "batch.completed")


def storm(secret: str, run: str, count: int, *, interleave: int = 1) -> Iterator[Delivery]:
    """Yield ``count`` deliveries, ten progress events per batch.

    ``interleave`` batches progress side by side: their events alternate, so
    a batch's ten events arrive spread over ``interleave * 10`` deliveries.
    """
    templates = Templates()
    n = 0
    group = 0
    while n < count:
        for key in STORM_KEYS:
            for j in range(interleave):
                if n >= count:
                    return
                yield templates.signed(secret, f"batch_{run}_{group * interleave + j:07d}", "batch.progress", key)
                n += 1
        group += 1


def batches_in(count: int, kind: str, interleave: int = 1) -> int:
    """Return how many distinct batches ``count`` deliveries of ``kind`` touch."""
    if kind == "unique":
        return count
    per = len(STORM_KEYS) * interleave
    full, rest = divmod(count, per)
    return full * interleave + min(rest, interleave)
