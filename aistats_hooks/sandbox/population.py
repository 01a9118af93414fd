"""Many open batches at once, ending at a steady rate: the population the polling-fallback bench needs.

``POST /_sandbox/seed`` puts ``count`` batches straight into ``in_progress``
(no file, no webhook: only polling can see them end), each ending at a time
drawn uniformly over ``spread_s`` seconds after ``lead_s``: with a spread of
100 minutes, 1% of them end every minute. Progress steps still move their
update times, as on the real gateway. ``GET /_sandbox/ended?since=`` says
which ended when, for the bench to time how soon the service saw each end.
"""

from __future__ import annotations

import random
import time
from typing import Any

from .batch import OUTCOMES, TERMINAL, Batch, Plan
from .ids import batch_id
from .providers import native_id, provider_of, view
from .lifecycle import OUTCOME_WEIGHTS, next_step

MODELS = ("openai/gpt-5-mini", "openai/gpt-5-nano", "anthropic/claude-haiku-4-5", "google/gemini-2.5-flash",
          "mistral/mistral-small-latest", "x-ai/grok-4-fast")
MAX_SEED = 1_000_000


def seed_open(gateway: Any, count: int, *, lead_s: float, spread_s: float, seed: int | None = None) -> list[dict]:
    """Create ``count`` in-progress batches ending over ``[lead_s, lead_s + spread_s]``; return their ids and models."""
    rng = random.Random(seed)
    out = []
    with gateway._lock:
        # One real creation time for all: every batch then maps simulated to shown time alike, so the
        # list's order (simulated) and its updated_at (shown) agree, as on the real gateway.
        now, real = gateway.clock.now(), time.time()
        for _ in range(count):
            outcome = rng.choices(OUTCOMES, weights=OUTCOME_WEIGHTS)[0]
            total = rng.randint(1, 20)
            failed = 0 if rng.random() < 0.75 else max(1, total // 10)
            plan = Plan(outcome, now, now, now + lead_s + rng.uniform(0, spread_s),
                        1.0 if outcome == "completed" else rng.uniform(0.2, 0.8), total - failed, failed)
            model = rng.choice(MODELS)
            batch = Batch(id=batch_id(real), plan=plan, base_url=gateway.public_url, request_id="seeded",
                          native_id=native_id(provider_of(model)), provider=provider_of(model), model=model,
                          endpoint="/v1/responses", completion_window="24h", total=total, status="in_progress",
                          created_ms=int(now * 1000), updated_ms=int(now * 1000), real_created=real)
            batch.status_at.update(validating=now, in_progress=now)
            gateway._batches[batch.id] = batch
            gateway._schedule(batch, next_step(batch, now))
            out.append({"id": batch.id, "model": model, "total": total})
    return out


def ended_since(gateway: Any, since: float) -> list[dict]:
    """Batches that reached a final status at or after ``since`` (unix seconds as the batch shows them)."""
    gateway.tick()
    out = []
    with gateway._lock:
        for batch in gateway._batches.values():
            if batch.status in TERMINAL:
                at = batch.stamp(batch.status_at.get(batch.status, batch.plan.end_at))
                if at >= since:
                    # The gateway's status: an Anthropic batch cancelled after some successes reads completed.
                    out.append({"id": batch.id, "status": view(batch)["status"], "at": at})
    return out
