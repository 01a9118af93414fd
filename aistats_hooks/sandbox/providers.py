"""Batches of Anthropic, Google, Mistral and xAI models, in their providers' own shapes.

The gateway passes a non-OpenAI provider's batch object through retrieve with only ``id``,
``native_batch_id``, ``status`` and ``request_counts`` normalised (plus Mistral's and Google's file
ids): ``core/batch-provider-adapters.ts`` ``normalizeProviderBatchPayload``. Its own record (what the
list and the webhook ``data`` are built from) holds that normalised view. ``native_object`` builds
what the provider answers for a sandbox batch; ``normalize`` is the gateway's normalisation, ported;
``view`` is the record's status, counts and files for any provider (OpenAI's are the batch's own).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timezone
from typing import Any

from .batch import TERMINAL, Batch

ANTHROPIC, GOOGLE, MISTRAL, XAI = "anthropic", "google-ai-studio", "mistral", "x-ai"
# The gateway's provider id for a model's prefix (the rest are their own ids).
PROVIDER_OF_PREFIX = {"google": GOOGLE, "gemini": GOOGLE, "xai": XAI, "x-ai": XAI}
SHAPED = frozenset({ANTHROPIC, GOOGLE, MISTRAL, XAI})


def provider_of(model: str) -> str:
    """Return the gateway's provider id for ``model`` (``prefix/name``; no prefix: openai)."""
    if "/" not in model:
        return "openai"
    prefix = model.split("/", 1)[0].lower()
    return PROVIDER_OF_PREFIX.get(prefix, prefix)


def native_id(provider: str) -> str:
    """Return a provider-native batch id in the provider's own form."""
    if provider == ANTHROPIC:
        return "msgbatch_" + secrets.token_hex(12)
    if provider == GOOGLE:
        return "batches/" + secrets.token_hex(8)
    if provider == MISTRAL:
        return str(uuid.uuid4())
    return "batch_" + secrets.token_hex(16)


def rfc3339(seconds: float | None) -> str | None:
    """Format unix seconds as RFC 3339 with a Z (Anthropic's, Google's and xAI's times)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _at(batch: Batch, status: str) -> float | None:
    return batch.stamp(batch.status_at[status]) if status in batch.status_at else None


def _ended(batch: Batch) -> float | None:
    return next((_at(batch, s) for s in TERMINAL if s in batch.status_at), None)


def _rest(batch: Batch) -> int:
    """Requests neither succeeded nor errored: still processing, or never run at an early end."""
    return max(batch.total - batch.completed - batch.failed, 0)


def _anthropic(batch: Batch) -> dict[str, Any]:
    ended = batch.terminal
    rest = _rest(batch)
    where = {"cancelled": "canceled", "expired": "expired"}.get(batch.status, "errored") if ended else "processing"
    counts = {"processing": 0, "succeeded": batch.completed, "errored": batch.failed, "canceled": 0, "expired": 0}
    counts[where] += rest
    status = "ended" if ended else "canceling" if batch.status == "cancelling" else "in_progress"
    created = batch.stamp(batch.plan.created)
    return {
        "id": batch.native_id, "type": "message_batch", "processing_status": status, "request_counts": counts,
        "ended_at": rfc3339(_ended(batch)), "created_at": rfc3339(created), "expires_at": rfc3339(created + 86400),
        "archived_at": None, "cancel_initiated_at": rfc3339(_at(batch, "cancelling")),
        "results_url": f"https://api.anthropic.com/v1/messages/batches/{batch.native_id}/results" if ended else None,
    }


GOOGLE_STATES = {"validating": "BATCH_STATE_PENDING", "completed": "BATCH_STATE_SUCCEEDED",
                 "failed": "BATCH_STATE_FAILED", "cancelled": "BATCH_STATE_CANCELLED",
                 "expired": "BATCH_STATE_EXPIRED"}


def _google(batch: Batch) -> dict[str, Any]:
    rest = _rest(batch)
    failed = batch.failed + (rest if batch.terminal and batch.status != "cancelled" else 0)
    stats = {"requestCount": str(batch.total), "successfulRequestCount": str(batch.completed),
             "failedRequestCount": str(failed), "pendingRequestCount": str(0 if batch.terminal else rest)}
    metadata: dict[str, Any] = {
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch",
        "model": "models/" + batch.model.split("/", 1)[-1], "displayName": f"phaseo-{batch.id}",
        "createTime": rfc3339(batch.stamp(batch.plan.created)), "updateTime": rfc3339(batch.stamp(batch.updated_ms / 1000)),
        "batchStats": stats, "state": GOOGLE_STATES.get(batch.status, "BATCH_STATE_RUNNING"), "name": batch.native_id,
    }
    out: dict[str, Any] = {"name": batch.native_id, "metadata": metadata, "done": batch.terminal}
    if batch.terminal:
        metadata["endTime"] = rfc3339(_ended(batch))
        if batch.output_file_id:
            metadata["output"] = {"responsesFile": batch.output_file_id}
            out["response"] = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1beta."
                                        "GenerateContentBatchOutput", "responsesFile": batch.output_file_id}
    return out


MISTRAL_STATUSES = {"validating": "QUEUED", "in_progress": "RUNNING", "finalizing": "RUNNING",
                    "cancelling": "CANCELLATION_REQUESTED", "completed": "SUCCESS", "failed": "FAILED",
                    "expired": "TIMEOUT_EXCEEDED", "cancelled": "CANCELLED"}


def _mistral(batch: Batch) -> dict[str, Any]:
    ended = _ended(batch)
    started = _at(batch, "in_progress")
    return {
        "id": batch.native_id, "object": "batch", "input_files": [batch.input_file_id] if batch.input_file_id else [],
        "metadata": dict(batch.metadata or {}), "endpoint": "/v1/chat/completions",
        "model": batch.model.split("/", 1)[-1], "agent_id": None,
        "output_file": batch.output_file_id if batch.terminal else None,
        "error_file": batch.error_file_id if batch.terminal else None, "errors": [],
        "status": MISTRAL_STATUSES.get(batch.status, "RUNNING"), "created_at": int(batch.stamp(batch.plan.created)),
        "total_requests": batch.total, "completed_requests": batch.completed + batch.failed,
        "succeeded_requests": batch.completed, "failed_requests": batch.failed,
        "started_at": int(started) if started else None, "completed_at": int(ended) if ended else None,
    }


def _xai(batch: Batch) -> dict[str, Any]:
    rest = _rest(batch)
    cancelled = rest if batch.terminal and batch.status == "cancelled" else 0
    errors = batch.failed + (rest if batch.terminal and batch.status != "cancelled" else 0)
    created = batch.stamp(batch.plan.created)
    return {
        "batch_id": batch.native_id, "name": f"phaseo-{batch.id}", "create_time": rfc3339(created),
        "expire_time": rfc3339(created + 86400), "create_api_key_id": "sandbox-key",
        "cancel_time": rfc3339(_at(batch, "cancelling")), "cancel_by_xai_message": None,
        "state": {"num_requests": batch.total, "num_pending": 0 if batch.terminal else rest,
                  "num_success": batch.completed, "num_error": errors, "num_cancelled": cancelled},
    }


NATIVE = {ANTHROPIC: _anthropic, GOOGLE: _google, MISTRAL: _mistral, XAI: _xai}


def native_object(batch: Batch) -> dict[str, Any]:
    """What the batch's provider answers for it (only for SHAPED providers)."""
    return NATIVE[batch.provider](batch)


def _num(value: Any) -> float | None:
    """The gateway's toBatchFiniteNumber: numbers and numeric strings, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            return None
    return None


def _n(value: Any) -> float:
    return _num(value) or 0


def _status(provider: str, payload: dict[str, Any]) -> str | None:
    """normalizeProviderBatchStatus, for the four shaped providers."""
    raw = payload.get("status") or payload.get("processing_status") or payload.get("state") or (
        payload.get("metadata") or {}).get("state")
    status = raw.strip().lower() if isinstance(raw, str) and raw.strip() else None
    if provider == MISTRAL:
        return {"queued": "validating", "running": "in_progress", "success": "completed",
                "timeout_exceeded": "expired", "cancellation_requested": "cancelling"}.get(status, status)
    if provider == ANTHROPIC:
        if status == "ended":
            c = payload.get("request_counts") or {}
            for key, name in (("succeeded", "completed"), ("errored", "failed"), ("expired", "expired"),
                              ("canceled", "cancelled")):
                if _n(c.get(key)) > 0:
                    return name
            return "completed"
        return {"canceling": "cancelling", "canceled": "cancelled"}.get(status, status)
    if provider == GOOGLE:
        state = (status or "").replace("job_state_", "batch_state_")
        if state == "batch_state_succeeded":
            stats = (payload.get("metadata") or {}).get("batchStats") or {}
            return "failed" if _n(stats.get("successfulRequestCount")) == 0 and _n(
                stats.get("failedRequestCount")) > 0 else "completed"
        return {"batch_state_pending": "pending", "batch_state_running": "in_progress",
                "batch_state_failed": "failed", "batch_state_cancelled": "cancelled",
                "batch_state_expired": "expired"}.get(state, status)
    if provider == XAI:
        if status:
            return "cancelled" if status == "canceled" else status
        s = payload.get("state") or {}
        pending, total = _num(s.get("num_pending")), _num(s.get("num_requests"))
        ok, err, cancelled = _n(s.get("num_success")), _n(s.get("num_error")), _n(s.get("num_cancelled"))
        if pending is not None and pending > 0:
            return "in_progress"
        if pending == 0 or (total is not None and total > 0 and ok + err + cancelled >= total):
            if ok > 0:
                return "completed"
            if err > 0:
                return "failed"
            if cancelled > 0:
                return "cancelled"
            return "pending" if pending == 0 and total == 0 else "completed" if pending == 0 else None
        return "in_progress" if total is not None and total > ok + err + cancelled else None
    return status


def normalize(provider: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The gateway's normalizeProviderBatchPayload: the provider's object with a few fields normalised."""
    native = next((payload[k] for k in ("native_batch_id", "name", "batch_id", "id")
                   if isinstance(payload.get(k), str) and payload[k].strip()), None)
    out = dict(payload)
    if native:
        out["id"] = native.rsplit("/", 1)[-1] if provider == GOOGLE and "/" in native else native
        out["native_batch_id"] = native
    status = _status(provider, payload)
    if status:
        out["status"] = status
    if provider == MISTRAL:
        files = payload.get("input_files") or []
        out["input_file_id"] = files[0] if files else payload.get("input_file_id")
        out["output_file_id"] = payload.get("output_file") or payload.get("output_file_id")
        out["error_file_id"] = payload.get("error_file") or payload.get("error_file_id")
        out["request_counts"] = {"total": _num(payload.get("total_requests")),
                                 "completed": _num(payload.get("succeeded_requests", payload.get("completed_requests"))),
                                 "failed": _num(payload.get("failed_requests"))}
    elif provider == ANTHROPIC:
        c = payload.get("request_counts") or {}
        out["request_counts"] = {
            "total": sum(_n(c.get(k)) for k in ("processing", "succeeded", "errored", "canceled", "expired")),
            "completed": _num(c.get("succeeded")),
            "failed": sum(_n(c.get(k)) for k in ("errored", "canceled", "expired"))}
    elif provider == GOOGLE:
        stats = (payload.get("metadata") or {}).get("batchStats") or {}
        out["output_file_id"] = ((payload.get("response") or {}).get("responsesFile")
                                 or ((payload.get("metadata") or {}).get("output") or {}).get("responsesFile"))
        out["request_counts"] = {"total": _num(stats.get("requestCount")),
                                 "completed": _num(stats.get("successfulRequestCount")),
                                 "failed": _num(stats.get("failedRequestCount"))}
    elif provider == XAI:
        s = payload.get("state") or {}
        out["request_counts"] = {"total": _num(s.get("num_requests")), "completed": _num(s.get("num_success")),
                                 "failed": _num(s.get("num_error"))}
    return out


def view(batch: Batch) -> dict[str, Any]:
    """The gateway record's status, counts, files and native id (what list and webhook data show)."""
    key = (batch.status, batch.completed, batch.failed, batch.output_file_id, batch.error_file_id)
    if batch.shown is not None and batch.shown[0] == key:
        return batch.shown[1]
    batch.shown = (key, _view(batch))
    return batch.shown[1]


def _view(batch: Batch) -> dict[str, Any]:
    if batch.provider not in SHAPED:
        return {"status": batch.status, "request_counts": {"total": batch.total, "completed": batch.completed,
                                                           "failed": batch.failed},
                "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id,
                "native_batch_id": batch.native_id}
    shaped = normalize(batch.provider, native_object(batch))
    return {"status": shaped.get("status") or batch.status,
            "request_counts": {k: (int(v) if v is not None else None) for k, v in shaped["request_counts"].items()},
            "output_file_id": shaped.get("output_file_id"), "error_file_id": shaped.get("error_file_id"),
            "native_batch_id": shaped.get("native_batch_id")}
