"""Batch commands: ``create-batch``, ``upload``, ``status`` and ``cancel``."""

from __future__ import annotations

from typing import Any

import click
from redis.exceptions import RedisError

from ..config import Settings
from ..errors import ConfigError
from ..rules.billing import nanos_to_usd
from ..rules.timestamps import iso, parse_time
from ..reconcile import track_batch
from .core import CommandError, Resources, emit, event_type, json_option, pass_res


def _key_values(ctx, param, values: tuple[str, ...]) -> dict[str, str]:
    """Parse repeated ``KEY=VALUE`` options into a dict."""
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def _event_list(ctx, param, values: tuple[str, ...]) -> list[str]:
    """Parse repeated, comma-separated event types, each checked."""
    events = [e.strip() for value in values for e in value.split(",") if e.strip()]
    for event in events:
        event_type(event)
    return events


def _webhook(settings: Settings, endpoint_id: str | None, events: list[str]) -> dict[str, Any]:
    """Return the ``webhook`` of a batch request: a managed endpoint, by id (the gateway refuses inline URLs)."""
    endpoint_id = endpoint_id or settings.webhook_endpoint_id
    if not endpoint_id:
        raise ConfigError(
            "AISTATS_WEBHOOK_ENDPOINT_ID",
            "required to give the batch a webhook: create one with `endpoints create` "
            "(or pass --webhook-endpoint-id, or --no-webhook to rely on polling)",
        )
    webhook: dict[str, Any] = {"endpoint_id": endpoint_id}
    if events:
        webhook["events"] = events
    return webhook


@click.command("create-batch")
@click.option("--endpoint", required=True, help="Target endpoint of the rows, e.g. responses.")
@click.option("--input-file-id", required=True, help="The uploaded JSONL file (see `upload`).")
@click.option("--completion-window", default="24h", show_default=True)
@click.option("--session-id", default=None, help="Optional grouping id.")
@click.option("--model", default=None,
              help="Model for rows whose body names none (the gateway's `model`; rows' own body.model wins).")
@click.option("--metadata", "metadata", multiple=True, callback=_key_values, metavar="KEY=VALUE",
              help="Metadata to persist with the batch (repeatable).")
@click.option("--events", "events", multiple=True, callback=_event_list, metavar="TYPE[,TYPE]",
              help="Webhook events for this batch (repeatable; default: the endpoint's events).")
@click.option("--webhook-endpoint-id", default=None,
              help="The managed webhook endpoint to deliver to (default: $AISTATS_WEBHOOK_ENDPOINT_ID).")
@click.option("--no-webhook", is_flag=True, help="Create without a webhook; the sweep polls it.")
@json_option
@pass_res
def create_batch(res: Resources, endpoint, input_file_id, completion_window, session_id, model, metadata, events,
                 webhook_endpoint_id, no_webhook) -> None:
    """Create a batch upstream, delivering to our managed webhook endpoint, and track it here.

    Prints the batch id (the whole batch object with --json).
    """
    settings = res.settings  # a malformed setting fails first, before any usage check
    request: dict[str, Any] = {"endpoint": endpoint, "input_file_id": input_file_id,
                               "completion_window": completion_window}
    if session_id:
        request["session_id"] = session_id
    if model:
        request["model"] = model
    if metadata:
        request["metadata"] = metadata
    if no_webhook and (webhook_endpoint_id or events):
        raise click.UsageError("--no-webhook excludes --webhook-endpoint-id and --events")
    if not no_webhook:
        request["webhook"] = _webhook(settings, webhook_endpoint_id, events)
    store = res.store
    store.redis.ping()  # fail before creating anything upstream we could not track
    batch = res.client.create_batch(request)
    try:
        track_batch(store, batch)
    except RedisError as exc:
        raise CommandError(
            f"created {batch.get('id')} upstream but could not track it ({type(exc).__name__}); "
            f"run `reconcile {batch.get('id')}` once Redis is back"
        ) from None
    emit(res, batch, str(batch.get("id")))


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--purpose", default="batch", show_default=True)
@json_option
@pass_res
def upload(res: Resources, file: str, purpose: str) -> None:
    """Upload a JSONL file of requests; print its file id.

    One request per line, as the OpenAI batch format the gateway passes to the provider:
    {"custom_id": "row-1", "method": "POST", "url": "/v1/responses", "body": {"model": "openai/gpt-5-nano", "input": "..."}}
    """
    uploaded = res.client.upload_file(file, purpose)
    emit(res, uploaded, str(uploaded.get("id")))


# Where a record's state came from, in words (record["source"]).
_SOURCES = {
    "retrieve": "the gateway's retrieve (the truth)",
    "webhook_payload": "a webhook payload (provisional: the next retrieve wins)",
    "tracked": "created here; no retrieve from the gateway has succeeded yet",
}


def _describe(record: dict) -> list[str]:
    """Return a batch record as a headline and indented details, each saying where it came from.

    Times are ISO-8601 UTC; the gateway's own times (created, updated,
    finalised) are its clock, the rest this service's.
    """
    counts = record.get("request_counts") or {}
    billing = record.get("billing") or {}
    upstream = record.get("upstream_status")
    head = f"{record.get('id')}  {record.get('status')}"
    if upstream and upstream != record.get("status"):
        head += f"  (the gateway says {upstream!r})"
    details = [
        ("source", _SOURCES.get(record.get("source"), record.get("source"))),
        ("requests", f"{counts.get('completed', 0)}/{counts.get('total', 0)} completed, {counts.get('failed', 0)} "
                     "failed (gateway)" if counts else None),
        ("model", record.get("model")),
        ("session", record.get("session_id")),
        ("billing", f"{billing.get('state')} {nanos_to_usd(int(billing.get('total_nanos') or 0))} USD (gateway"
                    + (f", finalised {billing['billed_at']})" if billing.get("billed_at") else ")") if billing else None),
        ("created", f"{record['created_at']} (gateway)" if record.get("created_at") else None),
        ("updated", f"{record['updated_at']} (gateway)" if record.get("updated_at") else None),
        ("tracked", f"{_iso(record['tracked_at'])} (here)" if record.get("tracked_at") else None),
        ("reconciled", f"{record.get('reconciled_at')} (here, {record.get('reconcile_count', 0)}x)"
         if record.get("reconciled_at") else None),
        ("last event", f"{(record.get('last_event') or {}).get('type')} (webhook, received "
                       f"{(record.get('last_event') or {}).get('received_at')})" if record.get("last_event") else None),
        ("error", (record.get("error") or {}).get("reason") if isinstance(record.get("error"), dict)
         else record.get("error")),
    ]
    return [head] + [f"  {name}: {value}" for name, value in details if value not in (None, "")]


def _iso(value) -> str:
    """Show a time as ISO-8601 UTC (records from before this version kept unix seconds)."""
    seconds = parse_time(value)
    return iso(seconds) if seconds is not None else str(value)


@click.command()
@click.argument("batch_id")
@click.option("--remote", is_flag=True, help="Retrieve the batch from the gateway instead.")
@json_option
@pass_res
def status(res: Resources, batch_id: str, remote: bool) -> None:
    """Show a batch's reconciled record (or, with --remote, the gateway's view)."""
    if remote:
        batch = res.client.retrieve_batch(batch_id)
        emit(res, batch, [f"{batch.get('id')}  {batch.get('status')}  (from the gateway)"] + _describe(batch)[1:])
        return
    record = res.store.get(batch_id)
    if record is None:
        raise CommandError(f"no batch {batch_id!r} is known here (try --remote)")
    lines = _describe(record)
    failure = _failed_reconcile(res, record)
    if failure is not None:
        record = {**record, "failed_reconcile": failure}
        lines += _failure_lines(failure)
    emit(res, record, lines)


_SAID = {"key_refused": "the gateway refused the API key", "payment": "the gateway wants payment",
         "upstream": "the gateway could not be reached", "other": "the reconcile failed"}


def _failed_reconcile(res: Resources, record: dict) -> dict | None:
    """The failed reconcile of a batch no retrieve has confirmed yet (what the gateway answered instead)."""
    if record.get("source") == "retrieve":
        return None
    from .. import dead_letters

    return dead_letters.for_batch(res.store.queue, str(record.get("id")))


def _failure_lines(failure: dict) -> list[str]:
    return [f"  gateway: {_SAID.get(failure.get('kind'), 'the reconcile failed')}: {failure.get('error')} "
            f"({failure.get('summary')}, {failure.get('failed_at')}; job {failure.get('job_id')})",
            f"  next: {failure.get('next_step')}"]


@click.command()
@click.argument("batch_id")
@json_option
@pass_res
def cancel(res: Resources, batch_id: str) -> None:
    """Ask the gateway to cancel a batch, then queue a reconcile of it."""
    batch = res.client.cancel_batch(batch_id)
    outcome = res.store.request_reconcile(batch_id, debounce=False)
    emit(res, {"batch": batch, "reconcile": outcome},
         f"cancel requested for {batch_id} (status: {batch.get('status')}); reconcile {outcome}")


COMMANDS = (create_batch, upload, status, cancel)
