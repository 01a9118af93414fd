"""The three faces of a batch: retrieve's decorated provider object, the list item, and the
webhook payload's ``data`` (a different object with folded status and ISO times).

Retrieve is the provider's own object (OpenAI's, or Anthropic's, Google's, Mistral's, xAI's:
providers.py), decorated; the list and the webhook ``data`` are built from the gateway's record,
whose status and counts are the normalised ones (``providers.view``).
"""

from __future__ import annotations

from typing import Any

from .batch import TERMINAL, Batch, cents_str, iso, usd_str
from .providers import SHAPED, native_object, normalize, view

# Statuses for which the gateway still offers a cancel_url.
CANCELLABLE = frozenset({"queued", "pending", "validating", "in_progress", "cancelling"})
# Retrieve's unix-second timestamps, each null until its status is reached.
STAMPS = ("in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled")
COMPLETION_SECONDS = 24 * 3600
TERMINAL_STATUSES = TERMINAL


def lifecycle_of(status: str) -> str:
    """Map a provider status to the gateway's lifecycle_status (retrieve keeps expired)."""
    if status in ("completed", "failed", "cancelled", "expired"):
        return status
    if status == "canceled":
        return "cancelled"
    if status in ("processing", "in_progress"):
        return "running"
    return "pending"


def folded_status(status: str) -> str:
    """Map a provider status to the webhook payload's public status."""
    # core/async-notifications.ts toPublicBatchStatus keeps expired (the event type is batch.failed).
    if status in ("completed", "cancelled", "failed", "expired"):
        return status
    if status in ("in_progress", "finalizing", "cancelling"):
        return "in_progress"
    return "pending"


def _urls(batch: Batch, status: str) -> tuple[str, str | None]:
    url = f"{batch.base_url}/v1/batches/{batch.id}"
    return url, (f"{url}/cancel" if status in CANCELLABLE else None)


def _pricing(batch: Batch) -> dict[str, Any]:
    """The priced usage's pricing block (its ``pricing_breakdown`` on retrieve)."""
    nanos = batch.billing.nanos
    return {"total_nanos": nanos, "total_usd_str": usd_str(nanos), "total_cents": nanos // 10_000_000,
            "currency": "USD", "lines": [dict(line) for line in batch.billing.lines]}


def _usage(batch: Batch) -> dict[str, Any]:
    nanos = batch.billing.nanos
    return {"requests": batch.completed, "input_tokens": None, "output_tokens": None, "total_tokens": None,
            "cost_nanos": nanos, "cost_usd": nanos / 1e9, "currency": "USD"}


def retrieve_billing(batch: Batch) -> dict[str, Any] | None:
    """Retrieve's ``billing`` (routes/v1/data/batches.ts buildBatchBilling): None until a finalisation ran.

    ``billed: false`` while a finalisation is blocked; the first one that bills says what it charged;
    every later one says ``charged: false, reason: "already_billed"`` with the stored ``cost_nanos``.
    """
    billing = batch.billing
    if billing.state == "pending":
        return None
    finalized_at = iso(batch.stamp(billing.finalized_at or batch.plan.created))
    if billing.state == "blocked":
        return {"billed": False, "charged": False, "reason": billing.reason, "cost_nanos": None, "cost_usd": None,
                "finalized_at": finalized_at, "pricing_breakdown": None}
    return {
        "billed": True,
        "charged": billing.state == "settled" and not billing.reported,
        "reason": "already_billed" if billing.reported else billing.reason,
        "cost_nanos": billing.nanos,
        "cost_usd": billing.nanos / 1e9,
        "finalized_at": finalized_at,
        "pricing_breakdown": _pricing(batch) if billing.state == "settled" else None,
    }


def _decorate(batch: Batch, out: dict[str, Any], status: str) -> dict[str, Any]:
    """Add what the gateway's decorateBatchPayload adds to a provider object."""
    out["request_id"] = batch.request_id
    out["provider"] = batch.provider
    if batch.session_id:
        out["session_id"] = batch.session_id
    if batch.webhook is not None:
        out["webhook"] = batch.webhook.to_dict()
    out["lifecycle_status"] = lifecycle_of(status)
    out["polling_url"], out["cancel_url"] = _urls(batch, status)
    out["pricing_lines"] = [dict(line) for line in batch.billing.lines]
    if batch.billing.state == "settled":
        out["usage"] = _usage(batch)
    billing = retrieve_billing(batch)
    if billing is not None:
        out["billing"] = billing
    return out


def retrieve_object(batch: Batch) -> dict[str, Any]:
    """GET /v1/batches/{id}: the provider's batch, decorated; OpenAI's has unix seconds, no updated_at."""
    if batch.provider in SHAPED:
        # Only id, native_batch_id, status, request_counts (and Mistral's, Google's files) normalised.
        shaped = normalize(batch.provider, native_object(batch))
        shaped["id"] = batch.id
        return _decorate(batch, shaped, shaped.get("status") or batch.status)
    created = int(batch.stamp(batch.plan.created))
    at = {f"{name}_at": int(batch.stamp(batch.status_at[name])) if name in batch.status_at else None
          for name in STAMPS}
    metadata = dict(batch.metadata or {})
    for key, value in (("phaseo_batch_id", batch.id), ("phaseo_request_id", batch.request_id)):
        if len(metadata) < 16:
            metadata[key] = value
    out: dict[str, Any] = {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "errors": ({"object": "list", "data": [dict(batch.upstream_error, line=None, param=None)]}
                   if batch.upstream_error else None),
        "input_file_id": batch.input_file_id,
        "completion_window": batch.completion_window,
        "status": batch.status,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": created,
        "expires_at": created + COMPLETION_SECONDS,
        **at,
        "request_counts": {"total": batch.total, "completed": batch.completed, "failed": batch.failed},
        "metadata": metadata,
        "model": batch.model,
        "native_batch_id": batch.native_id,
    }
    _decorate(batch, out, batch.status)
    out["results_url"] = f"{out['polling_url']}/results" if batch.terminal else None
    return out


def list_item(batch: Batch, updated_ms: int | None = None) -> dict[str, Any]:
    """A GET /v1/batches item, built from the gateway's record: ISO created_at/updated_at, then the decoration."""
    shown = view(batch)
    return _decorate(batch, {
        "id": batch.id,
        "object": "batch",
        "status": shown["status"],
        "endpoint": batch.endpoint,
        "completion_window": batch.completion_window,
        "input_file_id": batch.input_file_id,
        "output_file_id": shown["output_file_id"],
        "error_file_id": shown["error_file_id"],
        "request_counts": dict(shown["request_counts"]),
        "created_at": iso(batch.stamp(batch.created_ms / 1000)),
        "updated_at": iso(batch.stamp((updated_ms or batch.updated_ms) / 1000)),
    }, shown["status"])


def webhook_billing(batch: Batch, status: str | None = None) -> dict[str, Any]:
    """The webhook payload's ``billing`` (core/async-notifications.ts resolveBatchBilling).

    ``state``: settled when charged; else void for a failed, expired or cancelled batch; else pending
    when ``charged`` is false (a zero-cost completed batch stays pending); ``total_nanos`` null until
    a finalisation stored the cost.
    """
    billing = batch.billing
    public = folded_status(status or view(batch)["status"])
    charged = billing.charged
    voided = public in ("failed", "expired", "cancelled")
    nanos = billing.nanos if billing.final else None
    shown_usd = nanos / 1e9 if nanos is not None else (0.0 if voided else None)
    if charged is True:
        state = "settled"
    elif voided:
        state = "void"
    elif charged is False:
        state = "pending"
    else:
        state = "settled" if nanos is not None else "pending"
    out = {
        "currency": "usd",
        "state": state,
        "billable": charged is True,
        "total_nanos": nanos,
        "estimated_nanos": None,
        "reserved_nanos": None,
        "settled_provider_cost": f"{shown_usd:.2f}" if shown_usd is not None else None,
        "settled_user_cost": f"{shown_usd:.2f}" if shown_usd is not None else None,
        "charge_reason": "already_billed" if billing.reported else billing.reason,
        "charged": charged,
    }
    if billing.final:
        out["billed_at"] = iso(batch.stamp(billing.finalized_at or batch.plan.created))
    return out


def webhook_data(batch: Batch) -> dict[str, Any]:
    """The delivery's ``data``: the gateway's own job object, from its record (no metadata, folded status)."""
    shown = view(batch)
    status, counts = shown["status"], shown["request_counts"]
    url, cancel = _urls(batch, status)
    host = batch.base_url.split("://", 1)[-1]
    scheme = "wss" if batch.base_url.startswith("https") else "ws"
    total = counts.get("total") or 0
    done = min((counts.get("completed") or 0) + (counts.get("failed") or 0), total)
    return {
        "id": batch.id,
        "object": "batch",
        "kind": "batch",
        "status": folded_status(status),
        "lifecycle_status": lifecycle_of(folded_status(status)),
        "progress": 100 if status == "completed" else (round(100 * done / total) if total else 0),
        "request_id": batch.request_id,
        "session_id": batch.session_id,
        "app_id": None,
        "native_id": shown["native_batch_id"],
        "provider": batch.provider,
        "model": batch.model,
        "polling_url": url,
        "websocket_url": f"{scheme}://{host}/v1/async/batch/{batch.id}/ws",
        "cancel_url": cancel if folded_status(status) in ("pending", "in_progress") else None,
        "webhook": batch.webhook.to_dict() if batch.webhook else None,
        "endpoint": batch.endpoint,
        "completion_window": batch.completion_window,
        "input_file_id": batch.input_file_id,
        "output_file_id": shown["output_file_id"],
        "error_file_id": shown["error_file_id"],
        "pricing_lines": [dict(line) for line in batch.billing.lines],
        "request_counts": dict(counts),
        "upstream_error": dict(batch.upstream_error) if batch.upstream_error else None,
        "billing": webhook_billing(batch, status),
        "created_at": iso(batch.stamp(batch.created_ms / 1000)),
        "updated_at": iso(batch.stamp(batch.updated_ms / 1000)),
    }


def truth_billing(batch: Batch) -> dict[str, Any]:
    """The billing a reconciled record must end with: the webhook's, with the ledger's state and amount.

    ``settled`` (charged, for ``nanos``), ``void`` (billed, nothing charged: 0) or ``pending`` (None);
    the webhook itself says ``pending`` for a zero-cost completed batch, which retrieve shows as billed.
    """
    billing = batch.billing
    state = billing.state if billing.final else "pending"
    nanos = billing.nanos if state == "settled" else (0 if state == "void" else None)
    return dict(webhook_billing(batch), state=state, total_nanos=nanos)


def truth(batch: Batch) -> dict[str, Any]:
    """The ``/_sandbox`` truth: the webhook-shaped object with the gateway's status and a plan block.

    Bench and chaos tools compare the service's state with ``status``,
    ``request_counts`` and ``billing.state``/``billing.total_nanos`` here.
    """
    plan = batch.plan
    status = view(batch)["status"]
    return dict(
        webhook_data(batch),
        status=status,
        lifecycle_status=lifecycle_of(status),
        billing=truth_billing(batch),
        metadata=dict(batch.metadata) if batch.metadata is not None else None,
        retrieve=retrieve_object(batch),
        sandbox={
            "outcome": plan.outcome,
            "provider_status": batch.status,
            "faults": sorted(plan.faults),
            "created_at": iso(batch.stamp(plan.created)),
            "run_at": iso(batch.stamp(plan.run_at)),
            "end_at": iso(batch.stamp(plan.end_at)),
            "retrieves": batch.retrieves,
            "terminal": batch.status in TERMINAL,
            "billing_reason": batch.billing.reason,
        },
    )
