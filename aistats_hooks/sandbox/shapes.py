"""The three faces of a batch: retrieve's decorated OpenAI-style object, the list item,
and the webhook payload's ``data`` (a different object with folded status and ISO times)."""

from __future__ import annotations

from typing import Any

from .batch import TERMINAL, Batch, cents_str, iso, usd_str

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


def _urls(batch: Batch) -> tuple[str, str | None]:
    url = f"{batch.base_url}/v1/batches/{batch.id}"
    return url, (f"{url}/cancel" if batch.status in CANCELLABLE else None)


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
    """Retrieve's ``billing``: None until finalised, then the finalisation summary."""
    billing = batch.billing
    if not billing.final:
        return None
    return {
        "billed": True,
        "charged": billing.state == "settled" and billing.nanos > 0,
        "reason": billing.reason,
        "cost_nanos": billing.nanos,
        "cost_usd": billing.nanos / 1e9,
        "finalized_at": iso(batch.stamp(billing.finalized_at or batch.plan.created)),
        "pricing_breakdown": _pricing(batch) if billing.state == "settled" else None,
    }


def _decorate(batch: Batch, out: dict[str, Any]) -> dict[str, Any]:
    """Add what the gateway's decorateBatchPayload adds to a provider object."""
    out["request_id"] = batch.request_id
    out["provider"] = batch.provider
    if batch.session_id:
        out["session_id"] = batch.session_id
    if batch.webhook is not None:
        out["webhook"] = batch.webhook.to_dict()
    out["lifecycle_status"] = lifecycle_of(batch.status)
    out["polling_url"], out["cancel_url"] = _urls(batch)
    out["pricing_lines"] = [dict(line) for line in batch.billing.lines]
    if batch.billing.state == "settled":
        out["usage"] = _usage(batch)
    billing = retrieve_billing(batch)
    if billing is not None:
        out["billing"] = billing
    return out


def retrieve_object(batch: Batch) -> dict[str, Any]:
    """GET /v1/batches/{id}: the provider's batch, decorated; unix seconds, no updated_at."""
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
    _decorate(batch, out)
    out["results_url"] = f"{out['polling_url']}/results" if batch.terminal else None
    return out


def list_item(batch: Batch) -> dict[str, Any]:
    """A GET /v1/batches item: fewer fields, ISO created_at/updated_at, then the decoration."""
    return _decorate(batch, {
        "id": batch.id,
        "object": "batch",
        "status": batch.status,
        "endpoint": batch.endpoint,
        "completion_window": batch.completion_window,
        "input_file_id": batch.input_file_id,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "request_counts": {"total": batch.total, "completed": batch.completed, "failed": batch.failed},
        "created_at": iso(batch.stamp(batch.created_ms / 1000)),
        "updated_at": iso(batch.stamp(batch.updated_ms / 1000)),
    })


def webhook_billing(batch: Batch) -> dict[str, Any]:
    """The webhook payload's ``billing``: state, and total_nanos null until settled."""
    billing = batch.billing
    settled = billing.state == "settled"
    out = {
        "currency": "usd",
        "state": billing.state,
        "billable": settled,
        "total_nanos": billing.nanos if settled else (0 if billing.state == "void" else None),
        "estimated_nanos": None,
        "reserved_nanos": None,
        "settled_provider_cost": cents_str(billing.nanos) if billing.final else None,
        "settled_user_cost": cents_str(billing.nanos) if billing.final else None,
        "charge_reason": billing.reason,
        "charged": settled and billing.nanos > 0,
    }
    if billing.final:
        out["billed_at"] = iso(batch.stamp(billing.finalized_at or batch.plan.created))
    return out


def webhook_data(batch: Batch) -> dict[str, Any]:
    """The delivery's ``data``: the gateway's own job object (no metadata, folded status)."""
    url, cancel = _urls(batch)
    host = batch.base_url.split("://", 1)[-1]
    scheme = "wss" if batch.base_url.startswith("https") else "ws"
    done = batch.completed + batch.failed
    return {
        "id": batch.id,
        "object": "batch",
        "kind": "batch",
        "status": folded_status(batch.status),
        "lifecycle_status": lifecycle_of(batch.status),
        "progress": 100 if batch.terminal else (100 * done // batch.total if batch.total else 0),
        "request_id": batch.request_id,
        "session_id": batch.session_id,
        "app_id": None,
        "native_id": batch.native_id,
        "provider": batch.provider,
        "model": batch.model,
        "polling_url": url,
        "websocket_url": f"{scheme}://{host}/v1/async/batch/{batch.id}/ws",
        "cancel_url": cancel,
        "webhook": batch.webhook.to_dict() if batch.webhook else None,
        "endpoint": batch.endpoint,
        "completion_window": batch.completion_window,
        "input_file_id": batch.input_file_id,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "pricing_lines": [dict(line) for line in batch.billing.lines],
        "request_counts": {"total": batch.total, "completed": batch.completed, "failed": batch.failed},
        "upstream_error": dict(batch.upstream_error) if batch.upstream_error else None,
        "billing": webhook_billing(batch),
        "created_at": iso(batch.stamp(batch.created_ms / 1000)),
        "updated_at": iso(batch.stamp(batch.updated_ms / 1000)),
    }


def truth(batch: Batch) -> dict[str, Any]:
    """The ``/_sandbox`` truth: the webhook-shaped object with the real status and a plan block.

    Bench and chaos tools compare the service's state with ``status``,
    ``request_counts`` and ``billing.state``/``billing.total_nanos`` here.
    """
    plan = batch.plan
    return dict(
        webhook_data(batch),
        status=batch.status,
        lifecycle_status=lifecycle_of(batch.status),
        metadata=dict(batch.metadata) if batch.metadata is not None else None,
        retrieve=retrieve_object(batch),
        sandbox={
            "outcome": plan.outcome,
            "faults": sorted(plan.faults),
            "created_at": iso(batch.stamp(plan.created)),
            "run_at": iso(batch.stamp(plan.run_at)),
            "end_at": iso(batch.stamp(plan.end_at)),
            "retrieves": batch.retrieves,
            "terminal": batch.status in TERMINAL,
        },
    )
