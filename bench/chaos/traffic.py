"""Legit traffic: batches created in the sandbox, tracked the way the CLI tracks them.

Each batch gets its outcome, duration, subscription and sandbox faults from
the run's seeded RNG, and the webhook secret in force when it is created
(the new one after a rotation). Its webhooks go to the tapping proxy.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from aistats_hooks.config import Settings
from aistats_hooks.sdk import AIStats
from aistats_hooks.store import Store

from .record import Record

ALL_EVENTS = ["batch.created", "batch.progress", "batch.completed", "batch.failed", "batch.cancelled", "batch.expired"]
OUTCOMES = (("completed", 70), ("failed", 10), ("cancelled", 10), ("expired", 10))
# Faults the sandbox applies to a batch, steered through its metadata.
SANDBOX_FAULTS = ("duplicate", "out_of_order", "drop", "bad_signature", "delay", "replay",
                  "retrieve_500", "retrieve_429", "retrieve_slow")


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
    signing_secret: str = ""
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
        self.signing_secret = self.stack.old_secret
        self.stop = threading.Event()

    def _plan(self) -> dict:
        o, rng = self.opts, self._rng
        outcome = rng.choices([name for name, _ in OUTCOMES], weights=[w for _, w in OUTCOMES])[0]
        duration = rng.uniform(o.min_duration, o.max_duration)
        faults = [name for name in SANDBOX_FAULTS if rng.random() < o.rates[name]]
        events = ALL_EVENTS if rng.random() < 0.8 else None  # else the gateway's terminal-only default
        metadata = {"sandbox_outcome": outcome, "sandbox_duration_s": f"{duration:.1f}"}
        if faults:
            metadata["sandbox_faults"] = ",".join(faults)
        webhook = {"url": self.proxy_url + "/webhooks/aistats", "secret": self.signing_secret}
        if events:
            webhook["events"] = events
        return {"endpoint": "/v1/responses", "input_file_id": "file_chaos", "session_id": f"chaos-{self.phase}",
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
        info = BatchInfo(batch["id"], request["webhook"]["secret"], request["session_id"],
                         [f for f in meta.get("sandbox_faults", "").split(",") if f], time.monotonic())
        with self._lock:
            self.batches[info.id] = info
        self._track(batch)

    def _track(self, batch: dict) -> None:
        """``Store.track`` like ``create-batch`` does; keep it for later while Redis is away."""
        try:
            self._store.track(batch)
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
