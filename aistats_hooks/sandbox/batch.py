"""The batch record: its plan and the state the provider reports (shapes live in shapes.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .webhook import Webhook

TERMINAL = frozenset({"completed", "failed", "cancelled", "expired"})
OUTCOMES = ("completed", "failed", "expired", "cancelled")
# The provider's statuses, as retrieve shows them.
STATUSES = ("validating", "in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled")

# Nanos (1e-9 USD) per batch request, by model; the fixture's 10125 for gpt-5-mini.
PRICES = {
    "openai/gpt-5-mini": 10125,
    "openai/gpt-5-nano": 2025,
    "anthropic/claude-haiku-4-5": 40500,
    "google/gemini-2.5-flash": 7500,
    "mistral/mistral-small-latest": 3000,
    "x-ai/grok-4-fast": 5000,
    # Free: a completed batch of it is billed for nothing (zero_cost), and its webhook billing stays pending.
    "google/gemma-3-27b-it": 0,
}
DEFAULT_PRICE = 10125


def iso(seconds: float) -> str:
    """Format unix seconds as the gateway's ISO-8601: microseconds and +00:00."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="microseconds")


def usd_str(nanos: int) -> str:
    """Format integer nanos as an exact decimal dollar string with 9 places."""
    return f"{nanos // 10**9}.{nanos % 10**9:09d}"


def cents_str(nanos: int) -> str:
    """Format integer nanos as a 2-decimal dollar string (the webhook's settled_*_cost)."""
    return f"{nanos / 10**9:.2f}"


def price_of(model: str) -> int:
    """Return the per-request price of ``model`` in nanos."""
    return PRICES.get(model, DEFAULT_PRICE)


@dataclass
class Plan:
    """How a batch will unfold on the sandbox clock, decided at creation."""

    outcome: str
    created: float
    run_at: float
    end_at: float
    # Share of the requests processed before a failed/expired/cancelled end.
    stop_fraction: float
    final_completed: int
    final_failed: int
    cancel_at: float | None = None
    faults: frozenset[str] = frozenset()
    # When a completing batch moves to finalizing (None: never).
    finalize_at: float | None = None
    # lost_terminal: when the gateway's retried finalisation bills the batch after all.
    unblock_at: float | None = None


@dataclass
class Billing:
    """What the gateway's record holds of a batch's cost (core/batch-finalization.ts).

    ``state``: ``pending`` until a finalisation ran; ``blocked`` when one ran and could not bill
    (``billed: false``, retried later); ``settled`` when charged; ``void`` when billed with nothing
    charged (a released reservation, or a zero cost). ``reported`` once a finalisation answered:
    every later one says ``already_billed``.
    """

    state: str = "pending"  # pending | blocked | settled | void
    nanos: int = 0
    reason: str | None = None
    finalized_at: float | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)
    reported: bool = False

    @property
    def final(self) -> bool:
        """Say whether billing is finalised (billed, settled or void)."""
        return self.state in ("settled", "void")

    @property
    def charged(self) -> bool | None:
        """The record's ``charged``: None until a finalisation stored one."""
        return None if self.state == "pending" else self.state == "settled"


@dataclass
class Batch:
    """One batch: identity, plan and the state retrieve shows."""

    id: str
    plan: Plan
    base_url: str
    request_id: str
    native_id: str
    provider: str
    model: str
    endpoint: str
    completion_window: str
    total: int
    input_file_id: str | None = None
    session_id: str | None = None
    metadata: dict[str, Any] | None = None
    webhook: Webhook | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    status: str = "validating"
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    upstream_error: dict[str, Any] | None = None
    billing: Billing = field(default_factory=Billing)
    # Simulated unix seconds at which each status was first reached.
    status_at: dict[str, float] = field(default_factory=dict)
    created_ms: int = 0
    updated_ms: int = 0
    # Bumped whenever the plan changes, so stale heap entries are ignored.
    generation: int = 0
    retrieves: int = 0
    # Whether the batch ever was finalizing or cancelling (the gateway then polls every 2 minutes).
    polled_fast: bool = False
    # The out_of_order fault holds batch.created back until after the terminal event.
    held_created: Any = None
    # Real unix seconds at creation. Every time the batch shows is ``stamp``ed: its real creation
    # time plus the simulated time since, so batches order by when they were made, even across
    # restarts of the sandbox (whose simulated clock runs ahead of the wall clock).
    real_created: float | None = None
    # providers.view's last answer, with the state it was computed from.
    shown: Any = None

    def stamp(self, simulated: float) -> float:
        """Return the unix seconds the batch shows for simulated time ``simulated``."""
        if self.real_created is None:
            return simulated
        return self.real_created + (simulated - self.plan.created)

    @property
    def terminal(self) -> bool:
        """Say whether the batch has reached a final status."""
        return self.status in TERMINAL

    def touch(self, now: float) -> None:
        """Advance updated_at to ``now``, strictly past its previous value."""
        self.updated_ms = max(int(now * 1000), self.updated_ms + 1)

    def move(self, status: str, now: float) -> None:
        """Enter ``status`` at ``now``, remembering when."""
        self.status = status
        self.status_at.setdefault(status, now)
        if status in ("finalizing", "cancelling"):
            self.polled_fast = True
        self.touch(now)
