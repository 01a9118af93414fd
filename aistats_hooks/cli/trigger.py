"""``trigger``: send a signed test delivery to the running receiver (like ``stripe trigger``)."""

from __future__ import annotations

import json
import os
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

import click
from redis.exceptions import RedisError

from ..config import Settings
from ..rules.delivery import KIND_STATUS
from ..rules.timestamps import iso
from .core import WEBHOOK_PATH, CommandError, Resources, emit, event_type, json_option, pass_res, webhook_url

# Made-up batches of `trigger` carry this prefix: recognisable, and forgotten after the run.
TRIGGER_PREFIX = "batch_trigger_"
WAIT_SECONDS = 15.0


def sample_event(event_type: str, batch_id: str, *, key: str | None = None, attempt: int = 1,
                 now: float | None = None) -> dict:
    """Return a delivery body shaped like the gateway's (see docs/protocol.md and the fixture)."""
    now = time.time() if now is None else now
    kind = event_type.split(".", 1)[1]
    status = KIND_STATUS[kind]
    key = key or ("batch.progress:50" if kind == "progress" else f"batch.{kind}")
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in key)
    total = 2
    done = {"completed": 2, "progress": 1}.get(kind, 0)
    settled = kind == "completed"
    return {
        "id": f"evt_batch_{batch_id}_{safe}",
        "type": event_type,
        "created_at": int(now),
        "delivery": {"key": key, "attempt": attempt, "max_attempts": 4},
        "data": {
            "id": batch_id,
            "object": "batch",
            "kind": "batch",
            "status": status,
            "lifecycle_status": {"in_progress": "running", "expired": "failed"}.get(status, status),
            "request_id": "req_trigger",
            "session_id": "trigger",
            "provider": "openai",
            "model": "openai/gpt-5-mini",
            "endpoint": "/v1/responses",
            "completion_window": "24h",
            "input_file_id": "file_trigger",
            "output_file_id": "file_out_trigger" if settled else None,
            "error_file_id": None,
            "request_counts": {"total": total, "completed": done, "failed": 0},
            "pricing_lines": [],
            "upstream_error": None if kind not in ("failed", "expired") else {"code": kind, "message": f"batch {kind}"},
            "billing": {
                "currency": "usd",
                "state": "settled" if settled else ("void" if kind in ("failed", "cancelled", "expired") else "pending"),
                "billable": settled,
                "total_nanos": 20250 if settled else 0,
                "charged": settled,
            },
            "metadata": {"triggered_by": "aistats-hooks trigger"},
            "created_at": iso(now - 60),
            "updated_at": iso(now),
        },
    }


def _receiver_url(settings: Settings, url: str | None) -> str:
    """Return where to deliver: ``--url``, else ``PUBLIC_BASE_URL``, else the local port."""
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise click.BadParameter(f"expected an http(s) URL, got {url!r}", param_hint="--url")
        return url if parts.path not in ("", "/") else url.rstrip("/") + WEBHOOK_PATH
    if settings.public_base_url:
        return webhook_url(settings)
    return f"http://127.0.0.1:{os.environ.get('PORT', '').strip() or 8000}{WEBHOOK_PATH}"


def signing_secret(res: Resources) -> str:
    """Return the secret to sign with: the first configured one, else the newest stored by `endpoints create`."""
    settings = res.settings
    if settings.webhook_secrets:
        return settings.webhook_secrets[0]
    from .. import endpoint_secrets

    # Redis down propagates: "Redis is unreachable", not a missing AISTATS_WEBHOOK_SECRET (the secret is there).
    return endpoint_secrets.newest(res.store.redis, settings.key_prefix) or ""


def _headers(settings: Settings, event: dict, body: bytes, secret: str = "") -> dict[str, str]:
    """Return the gateway's delivery headers, signed with ``secret`` (unsigned only when allowed)."""
    from ..rules.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_headers

    if not secret:
        settings.require_webhook_secret()  # raises unless AISTATS_ALLOW_UNSIGNED=1
    delivery = event["delivery"]
    headers = sign_headers(secret, body, event_id=event["id"], event_type=event["type"],
                           delivery_key=delivery["key"], attempt=delivery["attempt"])
    if not secret:
        # Unsigned, as a receiver with AISTATS_ALLOW_UNSIGNED=1 expects: no signature, no timestamp.
        del headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER]
    return headers


def _answer_detail(answer: Any) -> str:
    """Return what a refusal says: its text, or its error and reason."""
    if isinstance(answer, str):
        return answer
    return " ".join(str(answer.get(k)) for k in ("error", "reason") if isinstance(answer, dict) and answer.get(k))


def _event_type_arg(ctx, param, value: str) -> str:
    """Parse EVENT_TYPE: ``batch.completed``, a bare ``completed``, or a key like ``batch.progress:50``."""
    return event_type(value, loose=True)


@click.command()
@click.argument("event_type", callback=_event_type_arg)
@click.option("--batch", "batch_id", default=None, help="The batch the event is about (default: a made-up one).")
@click.option("--url", default=None, help="Receiver URL (default: PUBLIC_BASE_URL, else http://127.0.0.1:$PORT).")
@click.option("--key", default=None, help="Delivery key (default: the event type; batch.progress:50 for progress).")
@click.option("--attempt", type=click.IntRange(1, 4), default=1, show_default=True)
@click.option("--keep", is_flag=True, help="Keep the made-up batch's record and events (default: forgotten after).")
@click.option("--wait", "wait_seconds", type=click.FloatRange(0, 300), default=WAIT_SECONDS, show_default=True,
              help="Seconds to wait for the made-up batch's reconcile before forgetting it.")
@json_option
@pass_res
def trigger(res: Resources, event_type: str, batch_id: str | None, url: str | None, key: str | None,
            attempt: int, keep: bool, wait_seconds: float) -> None:
    """Send a correctly signed test delivery to the running receiver (like `stripe trigger`).

    Without --batch the event is about a made-up ``batch_trigger_*`` batch: once
    a worker has reconciled it (the gateway answers 404: not_found), it is
    forgotten, so test batches do not pile up (--keep keeps it).
    """
    import httpx

    target = _receiver_url(res.settings, url)
    synthetic = batch_id is None
    batch_id = batch_id or f"{TRIGGER_PREFIX}{secrets.token_hex(6)}"
    event = sample_event(event_type, batch_id, key=key, attempt=attempt)
    body = json.dumps(event, separators=(",", ":")).encode()
    headers = _headers(res.settings, event, body, signing_secret(res))
    try:
        response = httpx.post(target, content=body, headers=headers, timeout=10.0, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise CommandError(f"could not reach the receiver at {target}: {type(exc).__name__}: {exc}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = response.text[:200]
    if not response.is_success:
        raise CommandError(f"the receiver at {target} answered {response.status_code}: {_answer_detail(answer)}")
    result = {"url": target, "event_id": event["id"], "batch_id": batch_id, "status": response.status_code,
              "response": answer}
    outcome = answer.get("status") if isinstance(answer, dict) else answer
    lines = [f"{event_type} {event['id']} -> {response.status_code} {outcome}"]
    if synthetic and not keep:
        result["forgotten"] = _forget_when_done(res, batch_id, wait_seconds)
        lines.append(f"{batch_id} forgotten" if result["forgotten"] else
                     f"{batch_id} not forgotten: Redis is unreachable; later: forget {batch_id}"
                     if result["forgotten"] is None else
                     f"{batch_id} is still queued (is a worker running?); later: forget {batch_id}")
    emit(res, result, lines)


def _forget_when_done(res: Resources, batch_id: str, wait_seconds: float) -> bool | None:
    """Forget the made-up batch once no reconcile of it is queued or running; tell whether it was (None: Redis
    is unreachable)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            outcome = res.store.forget(batch_id).outcome
        except RedisError:
            return None
        if outcome in ("forgotten", "unknown"):
            return True
        if outcome != "busy" or time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


COMMANDS = (trigger,)
