"""How a batch unfolds: its plan, its rising counts and its end (no events here)."""

from __future__ import annotations

import math
from collections.abc import Mapping
import random

from .batch import OUTCOMES, Batch, Plan
from .ids import new_id, output_file_id
from .validation import CreateRequest

OUTCOME_WEIGHTS = (85, 7, 4, 4)  # completed, failed, expired, cancelled: mostly completed
PROGRESS_STEPS = 10
# Validation takes a tenth of the duration, at most a simulated minute.
VALIDATING_SHARE = 0.1
VALIDATING_MAX = 60.0
# A completing batch spends the last twentieth of its time finalizing, at most a simulated minute.
FINALIZING_SHARE = 0.05
FINALIZING_MAX = 60.0


def request_total(req: CreateRequest, rng: random.Random) -> int:
    """Return the request count of the batch's input (made up for an unknown file under the lenient knob)."""
    return rng.randint(1, 20) if req.made_up_input else len(req.rows)


def make_plan(
    req: CreateRequest, rng: random.Random, now: float, total: int, fault_rates: Mapping[str, float]
) -> Plan:
    """Decide the batch's outcome, timing, request failures and faults."""
    duration = req.duration if req.duration is not None else rng.uniform(60, 600)
    outcome = req.outcome or rng.choices(OUTCOMES, weights=OUTCOME_WEIGHTS)[0]
    faults = set(req.faults)
    faults.update(name for name, rate in sorted(fault_rates.items()) if rng.random() < rate)
    share_failed = 0.0 if rng.random() < 0.75 else rng.uniform(0.01, 0.1)
    final_failed = int(total * share_failed)
    run_at, end_at = now + min(duration * VALIDATING_SHARE, VALIDATING_MAX), now + duration
    stop = 1.0 if outcome == "completed" else rng.uniform(0.2, 0.8)
    cancel_at = run_at + stop * (end_at - run_at) if outcome == "cancelled" else None
    finalize_at = end_at - min(duration * FINALIZING_SHARE, FINALIZING_MAX) if outcome == "completed" else None
    return Plan(outcome, now, run_at, end_at, stop, total - final_failed, final_failed, cancel_at, frozenset(faults),
                finalize_at)


def _step(plan: Plan, now: float) -> int:
    """Return how many tenths of the running window have passed at ``now``."""
    span = plan.end_at - plan.run_at
    return math.floor(PROGRESS_STEPS * (now - plan.run_at) / span) if span > 0 else PROGRESS_STEPS


def next_step(batch: Batch, now: float) -> float:
    """Return the simulated time of the batch's next visible step."""
    plan = batch.plan
    step = _step(plan, now) + 1
    due = plan.run_at + step * (plan.end_at - plan.run_at) / PROGRESS_STEPS
    if step / PROGRESS_STEPS > plan.stop_fraction:
        due = plan.cancel_at if plan.cancel_at is not None else plan.end_at
    # Strictly later than now, or the due loop would spin on this entry.
    return max(min(due, plan.end_at), now + 1e-3)


def raise_counts(batch: Batch, now: float) -> bool:
    """Raise the request counts to the plan's share at ``now``; say if they moved."""
    plan = batch.plan
    fraction = min(_step(plan, now) / PROGRESS_STEPS, plan.stop_fraction, 1.0)
    # max(): counts never fall, whatever the arithmetic says.
    completed = max(batch.completed, math.floor(fraction * plan.final_completed))
    failed = max(batch.failed, math.floor(fraction * plan.final_failed))
    if (completed, failed) == (batch.completed, batch.failed):
        return False
    batch.completed, batch.failed = completed, failed
    batch.touch(now)
    return True


def begin_cancel(batch: Batch, now: float) -> None:
    """Put the batch in ``cancelling``: counts freeze and the end becomes cancelled."""
    batch.plan.outcome = "cancelled"
    batch.move("cancelling", now)


def begin_finalizing(batch: Batch, now: float) -> None:
    """Put a completing batch in ``finalizing``: every request is done, output is being written."""
    batch.completed, batch.failed = batch.plan.final_completed, batch.plan.final_failed
    batch.move("finalizing", now)


def finish(batch: Batch, now: float) -> str:
    """End the batch with its planned outcome (billing is finalised after, charges.py); return the outcome."""
    outcome = "cancelled" if batch.status == "cancelling" else batch.plan.outcome
    if outcome == "completed":
        batch.completed, batch.failed = batch.plan.final_completed, batch.plan.final_failed
        batch.output_file_id = output_file_id(batch.provider)
        batch.error_file_id = new_id("file_err") if batch.failed else None
    elif outcome == "failed":
        batch.upstream_error = {"code": "provider_error", "message": "the provider failed the batch"}
        batch.error_file_id = new_id("file_err")
    elif outcome == "expired":
        batch.upstream_error = {"code": "expired", "message": f"not done within {batch.completion_window}"}
    batch.move(outcome, now)
    return outcome
