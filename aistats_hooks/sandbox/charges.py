"""A batch's billing as the gateway finalises it (core/batch-finalization.ts).

A terminal batch is charged for its completed requests whatever its status: a cancelled, expired
or failed batch with completed requests is charged (``charged_partial_success``), one with none is
voided (reason: its status). The status and counts are the gateway's normalised ones
(``providers.view``): an Anthropic batch that ended with some succeeded requests is ``completed``.
A finalisation can be blocked (``billed: false``, e.g. ``missing_output_file``) and retried.
"""

from __future__ import annotations

from .batch import Batch, Billing, price_of, usd_str
from .providers import view

BLOCKED_REASON = "missing_output_file"


def partial(completed: int, failed: int, total: int) -> bool:
    """isPartialSuccess: some requests completed, and some failed or never ran."""
    return completed > 0 and (failed > 0 or total > completed)


def finalize(batch: Batch, now: float) -> None:
    """Finalise a terminal batch's billing: charged for its completed requests, else voided."""
    shown = view(batch)
    status = shown["status"]
    counts = shown["request_counts"]
    completed, failed = counts.get("completed") or 0, counts.get("failed") or 0
    total = counts.get("total") or 0
    if completed <= 0 and status != "completed":
        # No completed request and no output: the reservation is released (reason: the status).
        batch.billing = Billing("void", 0, status, now, [])
        return
    nanos = completed * price_of(batch.model)
    is_partial = partial(completed, failed, total)
    if nanos > 0:
        reason = "charged_partial_success" if is_partial else "charged"
        batch.billing = Billing("settled", nanos, reason, now, [{
            "dimension": "batch_requests", "pricing_plan": "batch", "service_tier": "batch",
            "endpoint": batch.endpoint, "units": completed, "total_nanos": nanos, "total_usd_str": usd_str(nanos),
        }])
        return
    if status == "completed":
        reason = "partial_success_zero_cost" if is_partial else "zero_cost"
    else:
        reason = f"partial_success_{status}" if is_partial else status
    batch.billing = Billing("void", 0, reason, now, [])


def block(batch: Batch, now: float) -> None:
    """A finalisation that could not bill: ``billed: false``, nothing charged yet."""
    batch.billing = Billing("blocked", 0, BLOCKED_REASON, now, [])
