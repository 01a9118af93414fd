"""Legit traffic: batches created in the sandbox, tracked the way the CLI tracks them.

Each batch gets its outcome, duration, subscription and sandbox faults from
the run's seeded RNG. Every batch names one managed webhook endpoint whose
URL is the tapping proxy; the endpoint's secret is pinned (sandbox-only knob)
to the stack's old secret, and to the new one at the rotation, so the
gateway signs every delivery from then on, retries included, with the new one.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
from redis.exceptions import RedisError

from aistats_hooks.config import Settings
from aistats_hooks.sandbox.auth import default_management_key
from aistats_hooks.sdk import AIStats
from aistats_hooks.store import Store
from aistats_hooks.reconcile import track_batch

from .record import Record

ALL_EVENTS = ["batch.created", "batch.completed", "batch.failed", "batch.cancelled"]
# Request rows of the uploaded input file (the sandbox answers 404 to a file never uploaded).
# Models by weight: the provider-shaped ones come back from retrieve in their provider's shape
# (Anthropic's, Google's, Mistral's, xAI's: docs/protocol.md), and gemma costs nothing (zero_cost).
MODELS = (("openai/gpt-5-mini", 40), ("anthropic/claude-haiku-4-5", 15), ("google/gemini-2.5-flash", 15),
          ("mistral/mistral-small-latest", 15), ("x-ai/grok-4-fast", 10), ("google/gemma-3-27b-it", 5))


def rows(model: str) -> bytes:
    """Six request rows of ``model``: a failed, cancelled or expired batch is charged for those it completed."""
    return b"".join(b'{"custom_id":"c%d","body":{"model":"%s","input":"hi"}}\n' % (n, model.encode())
                    for n in range(6))


OUTCOMES = (("completed", 70), ("failed", 10), ("cancelled", 10), ("expired", 10))
# Faults the sandbox applies to a batch, steered through its metadata.
SANDBOX_FAULTS = ("duplicate", "out_of_order", "drop", "bad_signature", "delay", "replay",
                  "retrieve_500", "retrieve_429", "retrieve_slow", "lost_terminal")


@dataclass
class BatchInfo:
    """What the run knows about a batch it created."""

    id: str
    secret: str
    session: str
    faults: list[str]
    created: float
    tracked: bool = False


@dataclass
class Creator:
    """Create ``opts.batches`` batches over ``opts.window`` seconds, and track each."""

    stack: object
    opts: object
    record: Record
    proxy_url: str
    batches: dict[str, BatchInfo] = field(default_factory=dict)
    phase: str = "a"
    create_errors: int = 0
    track_retries: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.opts.seed)
        self._lock = threading.Lock()
        self._untracked: list[dict] = []
        self._sdk = AIStats(self.stack.api_key, self.stack.sandbox_url + "/v1", timeout=15)
        settings = Settings(redis_url=self.stack.redis_url, key_prefix=self.stack.prefix,
                            queue_name=self.stack.prefix, stale_after=self.opts.stale_after)
        self._store = Store(self.stack.redis(), settings)
        self._sandbox = httpx.Client(base_url=self.stack.sandbox_url,
                                     headers={"Authorization": f"Bearer {self.stack.api_key}"}, timeout=15)
        # Every batch's webhooks go through one managed endpoint, as at the gateway; only the
        # management key may create it (the sandbox's default, derived from the API key).
        management = {"Authorization": f"Bearer {default_management_key(self.stack.api_key)}"}
        created = self._sandbox.post("/v1/webhook-endpoints", headers=management, json={
            "url": self.proxy_url + "/webhooks/aistats", "name": "chaos", "events": ALL_EVENTS})
        created.raise_for_status()
        self.endpoint_id = created.json()["id"]
        self._files = {model: self._sdk.upload_file(rows(model), filename="chaos.jsonl")["id"] for model, _ in MODELS}
        self._secret = ""
        self.signing_secret = self.stack.old_secret
        self.stop = threading.Event()

    @property
    def signing_secret(self) -> str:
        """The endpoint's secret now: the gateway signs every delivery from now on with it."""
        return self._secret

    @signing_secret.setter
    def signing_secret(self, secret: str) -> None:
        # The rotation the run schedules: pin the endpoint's secret to the one the receiver knows.
        response = self._sandbox.put(f"/_sandbox/webhook-endpoints/{self.endpoint_id}/secret", json={"secret": secret})
        response.raise_for_status()
        self._secret = secret

    def _plan(self) -> dict:
        o, rng = self.opts, self._rng
        outcome = rng.choices([name for name, _ in OUTCOMES], weights=[w for _, w in OUTCOMES])[0]
        model = rng.choices([name for name, _ in MODELS], weights=[w for _, w in MODELS])[0]
        duration = rng.uniform(o.min_duration, o.max_duration)
        faults = [name for name in SANDBOX_FAULTS if rng.random() < o.rates[name]]
        events = ALL_EVENTS if rng.random() < 0.8 else None  # else the gateway's terminal-only default
        metadata = {"sandbox_outcome": outcome, "sandbox_duration_s": f"{duration:.1f}"}
        if faults:
            metadata["sandbox_faults"] = ",".join(faults)
        webhook = {"endpoint_id": self.endpoint_id}
        if events:
            webhook["events"] = events
        else:  # the terminal-only subscription
            webhook["events"] = ["batch.completed", "batch.failed", "batch.cancelled"]
        return {"endpoint": "/v1/responses", "input_file_id": self._files[model], "session_id": f"chaos-{self.phase}",
                "metadata": metadata, "webhook": webhook}

    def _create(self, request: dict) -> None:
        try:
            batch = self._sdk.create_batch(request)
        except Exception as exc:  # noqa: BLE001 - counted; the run goes on
            with self._lock:
                self.create_errors += 1
            print(f"chaos: create failed: {type(exc).__name__}: {exc}", flush=True)
            return
        meta = request["metadata"]
        info = BatchInfo(batch["id"], self.signing_secret, request["session_id"],
                         [f for f in meta.get("sandbox_faults", "").split(",") if f], time.monotonic())
        with self._lock:
            self.batches[info.id] = info
        self._track(batch)

    def _track(self, batch: dict) -> None:
        """``track_batch`` like ``create-batch`` does; keep it for later while Redis is away."""
        try:
            track_batch(self._store, batch)
            self.batches[batch["id"]].tracked = True
        except RedisError:
            with self._lock:
                self._untracked.append(batch)
                self.track_retries += 1

    def retry_untracked(self) -> int:
        """Track what Redis refused earlier; return how many are still waiting."""
        with self._lock:
            waiting, self._untracked = self._untracked, []
        for batch in waiting:
            self._track(batch)  # the creation snapshot: merge keeps whatever is newer
        with self._lock:
            return len(self._untracked)

    def run(self) -> None:
        """Create batches at an even pace until done or stopped."""
        o = self.opts
        interval = o.window / max(o.batches, 1)
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="chaos-create") as pool:
            for n in range(o.batches):
                if self.stop.is_set():
                    break
                delay = start + n * interval - time.monotonic()
                if delay > 0:
                    self.stop.wait(delay)
                pool.submit(self._create, self._plan())
                if n % 20 == 0 and self._untracked:
                    pool.submit(self.retry_untracked)
        deadline = time.monotonic() + 60
        while self.retry_untracked() and time.monotonic() < deadline:
            time.sleep(0.5)

    def close(self) -> None:
        self._sdk.close()
        self._sandbox.close()
