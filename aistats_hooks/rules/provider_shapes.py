"""Provider-shaped batch objects read as OpenAI's: status, counts, moments and files. Pure rules.

For Anthropic, Google, Mistral and xAI batches the gateway's retrieve is the provider's own object
with only ``id``, ``native_batch_id``, ``status`` and ``request_counts`` normalised (plus Mistral's
and Google's file ids): ``core/batch-provider-adapters.ts`` ``normalizeProviderBatchPayload``
(docs/protocol.md, "Provider-shaped batches"). The merge rules read OpenAI's fields, so
``openai_view`` fills them from each shape: the moments (RFC 3339 ``created_at``/``ended_at``,
Google's ``metadata.createTime``/``updateTime``/``endTime``, Mistral's ``started_at``/
``completed_at``, xAI's ``create_time``/``cancel_time``) and the files (Mistral's ``output_file``,
Google's ``responsesFile``). Where the status or the counts arrive un-normalised (``ended``,
``BATCH_STATE_*``, ``SUCCESS``, ``processing``/``succeeded``/... counts, ``state.num_*``), it applies
the gateway's own rules to them, so a gateway that passes more through still reads right. Billing
is the gateway's decoration, the same for every provider (billing.py). No I/O.
"""

from __future__ import annotations

from typing import Any

ANTHROPIC, GOOGLE, MISTRAL, XAI = "anthropic", "google-ai-studio", "mistral", "x-ai"
SHAPED = frozenset({ANTHROPIC, GOOGLE, MISTRAL, XAI})
# Statuses the merge rules read as they are (status.py).
KNOWN = frozenset({"pending", "queued", "validating", "in_progress", "processing", "running", "finalizing",
                   "cancelling", "completed", "failed", "expired", "cancelled", "canceled"})
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
_MISTRAL = {"queued": "validating", "running": "in_progress", "success": "completed", "failed": "failed",
            "timeout_exceeded": "expired", "cancellation_requested": "cancelling", "cancelled": "cancelled"}
_GOOGLE = {"pending": "pending", "running": "in_progress", "failed": "failed", "cancelled": "cancelled",
           "expired": "expired"}


def _num(value: Any) -> float | None:
    """A count: a number or a numeric string (Google's int64 counts are strings), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _n(value: Any) -> float:
    return _num(value) or 0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def provider_of(obj: dict[str, Any]) -> str | None:
    """Which provider's shape ``obj`` is: the gateway's ``provider``, else the shape's own marks."""
    named = _text(obj.get("provider"))
    if named and named.lower() in SHAPED:
        return named.lower()
    metadata = _dict(obj.get("metadata"))
    if obj.get("type") == "message_batch" or "processing_status" in obj:
        return ANTHROPIC
    if "batchStats" in metadata or str(obj.get("name") or "").startswith("batches/"):
        return GOOGLE
    if "input_files" in obj or "succeeded_requests" in obj:
        return MISTRAL
    if "num_requests" in _dict(obj.get("state")):
        return XAI
    return None


def provider_status(provider: str, obj: dict[str, Any]) -> str | None:
    """The gateway's normalizeProviderBatchStatus for one of the four shapes."""
    metadata = _dict(obj.get("metadata"))
    raw = next((_text(v) for v in (obj.get("status"), obj.get("processing_status"), obj.get("state"),
                                   metadata.get("state")) if _text(v)), None)
    status = raw.lower() if raw else None
    if provider == MISTRAL:
        return _MISTRAL.get(status or "", status)
    if provider == ANTHROPIC:
        if status == "ended":
            counts = _dict(obj.get("request_counts"))
            for key, name in (("succeeded", "completed"), ("errored", "failed"), ("expired", "expired"),
                              ("canceled", "cancelled"), ("cancelled", "cancelled")):
                if _n(counts.get(key)) > 0:
                    return name
            return "completed"
        return {"canceling": "cancelling", "canceled": "cancelled"}.get(status or "", status)
    if provider == GOOGLE:
        state = (status or "").replace("job_state_", "").replace("batch_state_", "")
        if state == "succeeded":
            stats = _dict(metadata.get("batchStats") or _dict(obj.get("response")).get("batchStats"))
            none_ok = _n(stats.get("successfulRequestCount")) == 0 and _n(stats.get("failedRequestCount")) > 0
            return "failed" if none_ok else "completed"
        if state in _GOOGLE:
            return _GOOGLE[state]
        if obj.get("done") is False:
            return "in_progress"
        if obj.get("done") is True:
            return "failed" if obj.get("error") else "completed"
        return status
    if provider == XAI:
        return "cancelled" if status == "canceled" else status or _xai_status(_dict(obj.get("state")))
    return status


def _xai_status(state: dict[str, Any]) -> str | None:
    """xAI's status from its counts: pending requests mean running; else the first non-empty outcome."""
    pending, total = _num(state.get("num_pending")), _num(state.get("num_requests"))
    ok, err = _n(state.get("num_success")), _n(state.get("num_error"))
    cancelled = _n(state.get("num_cancelled", state.get("num_canceled")))
    if pending is not None and pending > 0:
        return "in_progress"
    settled = pending == 0 or (total is not None and total > 0 and ok + err + cancelled >= total)
    if settled:
        for count, name in ((ok, "completed"), (err, "failed"), (cancelled, "cancelled")):
            if count > 0:
                return name
        if pending == 0:
            return "pending" if total == 0 else "completed"
    if total is not None and total > ok + err + cancelled:
        return "in_progress"
    return None


def provider_counts(provider: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The gateway's normalised request_counts ``{total, completed, failed}`` from a raw shape."""
    if provider == ANTHROPIC:
        c = _dict(obj.get("request_counts"))
        return {"total": sum(_n(c.get(k)) for k in ("processing", "succeeded", "errored", "canceled", "expired")),
                "completed": _num(c.get("succeeded")),
                "failed": sum(_n(c.get(k)) for k in ("errored", "canceled", "expired"))}
    if provider == GOOGLE:
        stats = _dict(_dict(obj.get("metadata")).get("batchStats") or _dict(obj.get("response")).get("batchStats"))
        return {"total": _num(stats.get("requestCount")), "completed": _num(stats.get("successfulRequestCount")),
                "failed": _num(stats.get("failedRequestCount"))}
    if provider == MISTRAL:
        return {"total": _num(obj.get("total_requests")),
                "completed": _num(obj.get("succeeded_requests", obj.get("completed_requests"))),
                "failed": _num(obj.get("failed_requests"))}
    state = _dict(obj.get("state"))
    return {"total": _num(state.get("num_requests")), "completed": _num(state.get("num_success")),
            "failed": _num(state.get("num_error"))}


def _moments(provider: str, obj: dict[str, Any], status: str) -> dict[str, Any]:
    """OpenAI's ``*_at`` moments from the shape's own (only those the object lacks are added)."""
    metadata = _dict(obj.get("metadata"))
    ended_key = f"{status}_at" if status in TERMINAL else None
    found: dict[str, Any] = {}
    if provider == ANTHROPIC:
        found = {ended_key: obj.get("ended_at"), "cancelling_at": obj.get("cancel_initiated_at")}
    elif provider == GOOGLE:
        found = {"created_at": metadata.get("createTime"), "updated_at": metadata.get("updateTime"),
                 ended_key: metadata.get("endTime")}
    elif provider == MISTRAL:
        found = {"in_progress_at": obj.get("started_at"), ended_key: obj.get("completed_at")}
    elif provider == XAI:
        found = {"created_at": obj.get("create_time"), "cancelling_at": obj.get("cancel_time")}
    return {k: v for k, v in found.items() if k and v is not None}


def _files(provider: str, obj: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's file ids from Mistral's ``input_files``/``output_file``/``error_file`` and Google's names."""
    if provider == MISTRAL:
        inputs = obj.get("input_files") if isinstance(obj.get("input_files"), list) else []
        return {"input_file_id": _text(inputs[0]) if inputs else None, "output_file_id": _text(obj.get("output_file")),
                "error_file_id": _text(obj.get("error_file"))}
    if provider == GOOGLE:
        dest, response = _dict(obj.get("dest")), _dict(obj.get("response"))
        output = _dict(_dict(obj.get("metadata")).get("output"))
        return {"output_file_id": _text(dest.get("fileName")) or _text(response.get("responsesFile"))
                or _text(output.get("responsesFile"))}
    return {}


def openai_view(obj: dict[str, Any]) -> dict[str, Any]:
    """Return ``obj`` with OpenAI's fields filled from its provider's shape (``obj`` itself if none)."""
    provider = provider_of(obj)
    if provider is None:
        return obj
    out = dict(obj)
    status = _text(obj.get("status"))
    if status is None or status.lower() not in KNOWN:
        out["status"] = provider_status(provider, obj) or status
    counts = obj.get("request_counts")
    if not isinstance(counts, dict) or "completed" not in counts:
        out["request_counts"] = provider_counts(provider, obj)
    shown = str(out.get("status") or "").lower()
    for key, value in [*_moments(provider, obj, shown).items(), *_files(provider, obj).items()]:
        if out.get(key) is None and value is not None:
            out[key] = value
    if out.get("native_batch_id") is None and out.get("native_id") is None:
        out["native_batch_id"] = next((_text(obj.get(k)) for k in ("name", "batch_id", "id") if _text(obj.get(k))), None)
    return out
