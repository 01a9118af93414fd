"""The batch record: its plan, its visible state and its gateway-shaped JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .webhook import Webhook

TERMINAL = frozenset({"completed", "failed", "cancelled", "expired"})
OUTCOMES = ("completed", "failed", "expired", "cancelled")

# Nanos (1e-9 USD) per batch request, by model; the fixture's 10125 for gpt-5-mini.
PRICES = {
    "openai/gpt-5-mini": 10125,
    "openai/gpt-5-nano": 2025,
    "anthropic/claude-haiku-4-5": 40500,
    "google/gemini-2.5-flash": 7500,
}
DEFAULT_PRICE = 10125


def iso(seconds: float) -> str:
    """Format unix seconds as ISO-8601 UTC with milliseconds and a Z."""
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def usd_str(nanos: int) -> str:
    """Format integer nanos as an exact decimal dollar string with 9 places."""
    return f"{nanos // 10**9}.{nanos % 10**9:09d}"


def lifecycle_of(status: str) -> str:
    """Map a status to the gateway's lifecycle_status, as PROTOCOL.md describes."""
    if status == "completed":
        return "completed"
    if status in ("failed", "expired"):
        return "failed"
    if status in ("cancelled", "canceled"):
        return "cancelled"
    if status in ("processing", "in_progress"):
        return "running"
    return "pending"


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
    app_id: str | None = None
    metadata: dict[str, Any] | None = None
    webhook: Webhook | None = None
    status: str = "pending"
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    upstream_error: dict[str, Any] | None = None
    pricing_lines: list[dict[str, Any]] = field(default_factory=list)
    billing: dict[str, Any] = field(default_factory=dict)
    created_ms: int = 0
    updated_ms: int = 0
    # Bumped whenever the plan changes, so stale heap entries are ignored.
    generation: int = 0
    progress_bucket: int = 0
    # Non-terminal snapshots by progress bucket, for the out_of_order fault.
    snapshots: dict[int, dict[str, Any]] = field(default_factory=dict)
    progress_sent: set[int] = field(default_factory=set)
    retrieves: int = 0

    @property
    def terminal(self) -> bool:
        """Say whether the batch has reached a final status."""
        return self.status in TERMINAL

    def touch(self, now: float) -> None:
        """Advance updated_at to ``now``, strictly past its previous value."""
        self.updated_ms = max(int(now * 1000), self.updated_ms + 1)

    def truth(self) -> dict[str, Any]:
        """Return the batch object plus a ``sandbox`` block describing its plan."""
        plan = self.plan
        return dict(
            self.to_dict(),
            sandbox={
                "outcome": plan.outcome,
                "faults": sorted(plan.faults),
                "created_at": iso(plan.created),
                "run_at": iso(plan.run_at),
                "end_at": iso(plan.end_at),
                "retrieves": self.retrieves,
                "webhook_secret_set": bool(self.webhook and self.webhook.secret),
            },
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the batch object in the gateway's shape (a fresh copy)."""
        url = f"{self.base_url}/v1/batches/{self.id}"
        host = self.base_url.split("://", 1)[-1]
        scheme = "wss" if self.base_url.startswith("https") else "ws"
        cancellable = self.status in ("pending", "in_progress")
        return {
            "id": self.id,
            "object": "batch",
            "kind": "batch",
            "status": self.status,
            "lifecycle_status": lifecycle_of(self.status),
            "request_id": self.request_id,
            "session_id": self.session_id,
            "app_id": self.app_id,
            "native_id": self.native_id,
            "provider": self.provider,
            "model": self.model,
            "polling_url": url,
            "websocket_url": f"{scheme}://{host}/v1/async/batch/{self.id}/ws",
            "cancel_url": f"{url}/cancel" if cancellable else None,
            "webhook": self.webhook.to_dict() if self.webhook else None,
            "endpoint": self.endpoint,
            "completion_window": self.completion_window,
            "input_file_id": self.input_file_id,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "pricing_lines": [dict(line) for line in self.pricing_lines],
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "upstream_error": dict(self.upstream_error) if self.upstream_error else None,
            "billing": dict(self.billing),
            "metadata": dict(self.metadata) if self.metadata is not None else None,
            "created_at": iso(self.created_ms / 1000),
            "updated_at": iso(self.updated_ms / 1000),
        }


def pending_billing() -> dict[str, Any]:
    """Return the billing block of a batch whose cost is not known yet."""
    return {
        "currency": "usd",
        "settled_provider_cost": "0.00",
        "settled_user_cost": "0.00",
        "state": "pending",
        "billable": False,
        "total_nanos": 0,
        "charge_reason": None,
        "charged": False,
        "billed_at": None,
    }


def settle(batch: Batch, now: float) -> None:
    """Price the completed requests and settle the billing."""
    nanos = batch.completed * price_of(batch.model)
    batch.pricing_lines = [
        {
            "dimension": "batch_requests",
            "pricing_plan": "batch",
            "service_tier": "batch",
            "endpoint": batch.endpoint,
            "units": batch.completed,
            "total_nanos": nanos,
            "total_usd_str": usd_str(nanos),
        }
    ]
    total = sum(line["total_nanos"] for line in batch.pricing_lines)
    batch.billing = dict(
        pending_billing(),
        settled_provider_cost=usd_str(total),
        settled_user_cost=usd_str(total),
        state="settled",
        billable=True,
        total_nanos=total,
        charge_reason="charged",
        charged=True,
        billed_at=iso(now),
    )


def void(batch: Batch, reason: str) -> None:
    """Void the billing of a batch that ended without completing."""
    batch.pricing_lines = []
    batch.billing = dict(pending_billing(), state="void", charge_reason=reason)
