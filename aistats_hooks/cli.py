"""The operator's command line: ``python -m aistats_hooks <command>``.

Commands talk to the same Redis as the service (``REDIS_URL``, or the
embedded one under ``AISTATS_DATA_DIR``) and to the gateway through the
project's SDK. Every setting comes from the environment, as for the service.

Errors print one line on stderr and exit non-zero: 2 for a configuration
error, 1 for anything else (a gateway error, a usage error, Redis down).
``--json`` (before or after the command) prints machine-readable output.
"""

from __future__ import annotations

import json
import os
import secrets as _secrets
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import click
from redis.exceptions import RedisError

from . import logs
from .config import Settings
from .errors import AIStatsError, ConfigError, HooksError
from .reconcile import iso, nanos_to_usd

EXIT_CONFIG = 2
EXIT_ERROR = 1
WEBHOOK_PATH = "/webhooks/aistats"
EVENT_KINDS = ("created", "progress", "completed", "failed", "cancelled", "expired")
# What each event type says about the batch, for `trigger`.
_TRIGGER_STATUS = {
    "created": "pending",
    "progress": "in_progress",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
    "expired": "expired",
}


class CommandError(click.ClickException):
    """A user-facing failure: one line, exit 1."""

    exit_code = EXIT_ERROR


class Resources:
    """What commands use, built on first use from the environment, closed at the end."""

    def __init__(self) -> None:
        self.json = False
        self._settings: Settings | None = None
        self._store = None
        self._client = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    @property
    def store(self):
        if self._store is None:
            from .redis_conn import connect
            from .store import Store

            self._store = Store(connect(self.settings), self.settings)
        return self._store

    @property
    def client(self):
        if self._client is None:
            from .sdk import AIStats

            settings = self.settings
            self._client = AIStats(settings.require_api_key(), settings.base_url, timeout=settings.upstream_timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._store is not None:
            self._store.redis.close()


class HooksCLI(click.Group):
    """A click group whose every failure is one line and a meaningful exit status."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: D102
        code = self._run(args, prog_name, complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(self, args, prog_name, complete_var, **extra) -> int:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help())
            return 0
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            return _fail(exc.format_message() + hint, EXIT_ERROR)
        except click.ClickException as exc:
            return _fail(exc.format_message(), exc.exit_code or EXIT_ERROR)
        except click.Abort:
            return _fail("aborted", EXIT_ERROR)
        except ConfigError as exc:
            return _fail(f"configuration error: {exc}", EXIT_CONFIG)
        except AIStatsError as exc:
            return _fail(f"gateway error ({type(exc).__name__}): {exc}", EXIT_ERROR)
        except RedisError as exc:
            return _fail(f"redis unavailable: {type(exc).__name__}: {exc}", EXIT_ERROR)
        except HooksError as exc:
            return _fail(f"{type(exc).__name__}: {exc}", EXIT_ERROR)
        except (ValueError, OSError) as exc:
            return _fail(str(exc) or type(exc).__name__, EXIT_ERROR)
        except KeyboardInterrupt:
            return _fail("interrupted", 130)
        return rv if isinstance(rv, int) else 0


def _fail(message: str, code: int) -> int:
    """Print one redacted line on stderr and return ``code``."""
    line = " ".join(str(message).split())
    click.echo(f"aistats-hooks: {logs.Redactor(logs.secrets_from_env())(line)}", err=True)
    return code


def _json_option(func: Callable) -> Callable:
    """Accept ``--json`` after the command too."""

    def set_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            ctx.ensure_object(Resources).json = True

    return click.option(
        "--json", "json_output", is_flag=True, expose_value=False, callback=set_json, is_eager=True,
        help="Print machine-readable JSON.",
    )(func)


def _emit(res: Resources, data: Any, human: str | list[str] | None = None) -> None:
    """Print ``data`` as JSON with ``--json``, else the human text."""
    if res.json or human is None:
        click.echo(json.dumps(data, separators=(",", ":"), default=str))
        return
    for line in [human] if isinstance(human, str) else human:
        click.echo(line)


@click.group(cls=HooksCLI, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "json_output", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def cli(ctx: click.Context, json_output: bool) -> None:
    """Operate aistats-hooks: create and inspect batches, replay and trigger webhooks.

    Settings come from the environment (see .env.example).
    """
    res = ctx.ensure_object(Resources)
    res.json = res.json or json_output
    ctx.call_on_close(res.close)
    # Library warnings go to stderr as JSON lines; INFO chatter (httpx) stays out
    # of the CLI's output unless LOG_LEVEL asks for it.
    level = logs.level_from_env() if os.environ.get("LOG_LEVEL", "").strip() else "WARNING"
    logs.configure(level, force=False)


pass_res = click.make_pass_decorator(Resources, ensure=True)


# -- create-batch / upload -------------------------------------------------------

def _key_values(ctx, param, values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def _event_list(ctx, param, values: tuple[str, ...]) -> list[str]:
    events = [e.strip() for value in values for e in value.split(",") if e.strip()]
    for event in events:
        family, _, kind = event.partition(".")
        if family not in ("batch", "job") or kind not in EVENT_KINDS:
            raise click.BadParameter(
                f"{event!r} is not an event type (batch.<kind> or job.<kind>, kind one of {', '.join(EVENT_KINDS)})"
            )
    return events


def webhook_url(settings: Settings) -> str:
    """Return this service's webhook URL, from ``PUBLIC_BASE_URL``."""
    if not settings.public_base_url:
        raise ConfigError(
            "PUBLIC_BASE_URL",
            "required to give the batch a webhook URL (or pass --webhook-endpoint-id, or --no-webhook to rely on polling)",
        )
    return settings.public_base_url.rstrip("/") + WEBHOOK_PATH


@cli.command("create-batch")
@click.option("--endpoint", required=True, help="Target endpoint of the rows, e.g. responses.")
@click.option("--input-file-id", required=True, help="The uploaded JSONL file (see `upload`).")
@click.option("--completion-window", default="24h", show_default=True)
@click.option("--session-id", default=None, help="Optional grouping id.")
@click.option("--metadata", "metadata", multiple=True, callback=_key_values, metavar="KEY=VALUE",
              help="Metadata to persist with the batch (repeatable).")
@click.option("--events", "events", multiple=True, callback=_event_list, metavar="TYPE[,TYPE]",
              help="Webhook events to subscribe to (repeatable; default: the gateway's terminal events).")
@click.option("--webhook-endpoint-id", default=None, help="Use a webhook endpoint managed in the gateway (we_...).")
@click.option("--no-webhook", is_flag=True, help="Create without a webhook; the sweep polls it.")
@_json_option
@pass_res
def create_batch(res: Resources, endpoint, input_file_id, completion_window, session_id, metadata, events,
                 webhook_endpoint_id, no_webhook) -> None:
    """Create a batch upstream with our webhook, and track it here.

    Prints the batch id (the whole batch object with --json).
    """
    settings = res.settings
    request: dict[str, Any] = {"endpoint": endpoint, "input_file_id": input_file_id,
                               "completion_window": completion_window}
    if session_id:
        request["session_id"] = session_id
    if metadata:
        request["metadata"] = metadata
    if webhook_endpoint_id:
        if no_webhook:
            raise click.UsageError("--webhook-endpoint-id and --no-webhook exclude each other")
        request["webhook_endpoint_id"] = webhook_endpoint_id
    elif not no_webhook:
        webhook: dict[str, Any] = {"url": webhook_url(settings)}
        settings.require_webhook_secret()
        if events:
            webhook["events"] = events
        if settings.webhook_secrets:
            # The first secret signs; the others only verify (rotation).
            webhook["secret"] = settings.webhook_secrets[0]
        request["webhook"] = webhook
    store = res.store
    store.redis.ping()  # fail before creating anything upstream we could not track
    batch = res.client.create_batch(request)
    try:
        store.track(batch)
    except RedisError as exc:
        raise CommandError(
            f"created {batch.get('id')} upstream but could not track it ({type(exc).__name__}); "
            f"run `reconcile {batch.get('id')}` once Redis is back"
        ) from None
    _emit(res, batch, str(batch.get("id")))


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--purpose", default="batch", show_default=True)
@_json_option
@pass_res
def upload(res: Resources, file: str, purpose: str) -> None:
    """Upload a JSONL file of requests; print its file id."""
    uploaded = res.client.upload_file(file, purpose)
    _emit(res, uploaded, str(uploaded.get("id")))


# -- status / cancel ---------------------------------------------------------------

def _describe(record: dict) -> list[str]:
    counts = record.get("request_counts") or {}
    billing = record.get("billing") or {}
    lines = [f"{record.get('id')}  {record.get('status')}"]
    details = [
        ("requests", f"{counts.get('completed', 0)}/{counts.get('total', 0)} completed, {counts.get('failed', 0)} failed"
         if counts else None),
        ("model", record.get("model")),
        ("session", record.get("session_id")),
        ("billing", f"{billing.get('state')} {nanos_to_usd(int(billing.get('total_nanos') or 0))} USD"
         if billing else None),
        ("source", record.get("source")),
        ("reconciled", f"{record.get('reconciled_at')} ({record.get('reconcile_count', 0)}x)"
         if record.get("reconciled_at") else None),
        ("last event", (record.get("last_event") or {}).get("type")),
        ("updated", record.get("updated_at")),
    ]
    lines += [f"  {name}: {value}" for name, value in details if value not in (None, "")]
    return lines


@cli.command()
@click.argument("batch_id")
@click.option("--remote", is_flag=True, help="Retrieve the batch from the gateway instead.")
@_json_option
@pass_res
def status(res: Resources, batch_id: str, remote: bool) -> None:
    """Show a batch's reconciled record (or, with --remote, the gateway's view)."""
    if remote:
        batch = res.client.retrieve_batch(batch_id)
        _emit(res, batch, [f"{batch.get('id')}  {batch.get('status')}  (from the gateway)"] + _describe(batch)[1:])
        return
    record = res.store.get(batch_id)
    if record is None:
        raise CommandError(f"no batch {batch_id!r} is known here (try --remote)")
    _emit(res, record, _describe(record))


@cli.command()
@click.argument("batch_id")
@_json_option
@pass_res
def cancel(res: Resources, batch_id: str) -> None:
    """Ask the gateway to cancel a batch, then queue a reconcile of it."""
    batch = res.client.cancel_batch(batch_id)
    outcome = res.store.request_reconcile(batch_id)
    _emit(res, {"batch": batch, "reconcile": outcome},
          f"cancel requested for {batch_id} (status: {batch.get('status')}); reconcile {outcome}")


# -- reconcile / events / replay ---------------------------------------------------

def _open_batches(res: Resources) -> list[str]:
    return res.store.due_for_sweep("+inf", limit=100_000)


@cli.command()
@click.argument("batch_id", required=False)
@click.option("--all-open", is_flag=True, help="Every batch not final yet.")
@click.option("--now", is_flag=True, help="Reconcile here and now instead of queueing for a worker.")
@click.option("--force", is_flag=True, help="With --now: retrieve even a final batch.")
@_json_option
@pass_res
def reconcile(res: Resources, batch_id: str | None, all_open: bool, now: bool, force: bool) -> None:
    """Queue (or with --now, run) a reconcile of one batch or of every open one."""
    if bool(batch_id) == all_open:
        raise click.UsageError("give a BATCH_ID or --all-open (not both)")
    if force and not now:
        raise click.UsageError("--force needs --now")
    ids = [batch_id] if batch_id else _open_batches(res)
    results: dict[str, str] = {}
    failed = 0
    for one in ids:
        if not now:
            results[one] = res.store.request_reconcile(one)
            continue
        from .sync import sync_batch

        try:
            results[one] = sync_batch(res.store, res.client, one, force=force).value
        except AIStatsError as exc:
            if batch_id:
                raise
            failed += 1
            results[one] = f"error: {type(exc).__name__}: {exc}"
    if res.json:
        _emit(res, {"results": results})
    elif not ids:
        click.echo("no open batches")
    else:
        for one, outcome in results.items():
            click.echo(f"{one}  {outcome}")
    if failed:
        raise CommandError(f"{failed} of {len(ids)} reconciles failed")


def _event_row(event: dict) -> str:
    received = event.get("received_at")
    when = iso(received / 1000) if isinstance(received, int) else "-"
    dup = f"  duplicates={event['duplicates']}" if event.get("duplicates") else ""
    return f"{when}  {event['id']}  {event.get('type')}  attempt={event.get('attempt')}  {event.get('outcome')}{dup}"


@cli.command()
@click.argument("batch_id")
@click.option("--payload", is_flag=True, help="Include each event's body (with --json).")
@_json_option
@pass_res
def events(res: Resources, batch_id: str, payload: bool) -> None:
    """List the webhook events received for a batch, oldest first."""
    found = res.store.events(batch_id)
    if not found and res.store.get(batch_id) is None:
        raise CommandError(f"no batch {batch_id!r} is known here")
    rows = [{k: v for k, v in e.items() if payload or k not in ("body", "payload")} for e in found]
    _emit(res, {"batch_id": batch_id, "data": rows}, [_event_row(e) for e in found] or [f"{batch_id}: no events"])


@cli.command()
@click.argument("event_id", required=False)
@click.option("--batch", "batch_id", default=None, help="Replay every stored event of this batch.")
@_json_option
@pass_res
def replay(res: Resources, event_id: str | None, batch_id: str | None) -> None:
    """Re-queue stored events: a fresh reconcile of their batch."""
    if bool(event_id) == bool(batch_id):
        raise click.UsageError("give an EVENT_ID or --batch BATCH_ID (not both)")
    store = res.store
    if event_id:
        event = store.event(event_id)
        if event is None:
            raise CommandError(f"no stored event {event_id!r} (events are kept AISTATS_EVENT_RETENTION seconds)")
        batch_id = event.get("batch_id") or event.get("batch")
        if not batch_id:
            raise CommandError(f"event {event_id!r} is not about a batch (type {event.get('type')!r})")
        ids = [event_id]
    else:
        ids = [e["id"] for e in store.events(batch_id)]
        if not ids and store.get(batch_id) is None:
            raise CommandError(f"no batch {batch_id!r} is known here")
    outcome = store.request_reconcile(batch_id)
    _emit(res, {"batch_id": batch_id, "events": ids, "reconcile": outcome},
          f"{len(ids)} event(s) of {batch_id}: reconcile {outcome}")


# -- trigger -----------------------------------------------------------------------

def _event_type(ctx, param, value: str) -> str:
    family, sep, kind = value.partition(".")
    if not sep:
        family, kind = "batch", value
    kind = kind.split(":")[0]
    if family not in ("batch", "job") or kind not in EVENT_KINDS:
        raise click.BadParameter(f"{value!r} is not an event type (e.g. batch.completed; kinds: {', '.join(EVENT_KINDS)})")
    return f"{family}.{kind}"


def sample_event(event_type: str, batch_id: str, *, key: str | None = None, attempt: int = 1,
                 now: float | None = None) -> dict:
    """Return a delivery body shaped like the gateway's (see PROTOCOL.md and the fixture)."""
    now = time.time() if now is None else now
    kind = event_type.split(".", 1)[1]
    status = _TRIGGER_STATUS[kind]
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
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise click.BadParameter(f"expected an http(s) URL, got {url!r}", param_hint="--url")
        return url if parts.path not in ("", "/") else url.rstrip("/") + WEBHOOK_PATH
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/") + WEBHOOK_PATH
    return f"http://127.0.0.1:{os.environ.get('PORT', '').strip() or 8000}{WEBHOOK_PATH}"


@cli.command()
@click.argument("event_type", callback=_event_type)
@click.option("--batch", "batch_id", default=None, help="The batch the event is about (default: a made-up one).")
@click.option("--url", default=None, help="Receiver URL (default: PUBLIC_BASE_URL, else http://127.0.0.1:$PORT).")
@click.option("--key", default=None, help="Delivery key (default: the event type; batch.progress:50 for progress).")
@click.option("--attempt", type=click.IntRange(1, 4), default=1, show_default=True)
@_json_option
@pass_res
def trigger(res: Resources, event_type: str, batch_id: str | None, url: str | None, key: str | None,
            attempt: int) -> None:
    """Send a correctly signed test delivery to the running receiver (like `stripe trigger`)."""
    import httpx

    from .signatures import sign_headers

    settings = res.settings
    target = _receiver_url(settings, url)
    batch_id = batch_id or f"batch_trigger_{_secrets.token_hex(6)}"
    event = sample_event(event_type, batch_id, key=key, attempt=attempt)
    body = json.dumps(event, separators=(",", ":")).encode()
    if settings.webhook_secrets:
        headers = sign_headers(settings.webhook_secrets[0], body, event_id=event["id"], event_type=event_type,
                               delivery_key=event["delivery"]["key"], attempt=attempt)
    else:
        settings.require_webhook_secret()  # raises unless AISTATS_ALLOW_UNSIGNED=1
        headers = {"Content-Type": "application/json", "User-Agent": "Phaseo-Async-Webhook/1.0",
                   "x-phaseo-event-id": event["id"], "x-phaseo-event-type": event_type,
                   "x-phaseo-delivery-key": event["delivery"]["key"], "x-phaseo-attempt": str(attempt),
                   "x-phaseo-max-attempts": "4"}
    try:
        response = httpx.post(target, content=body, headers=headers, timeout=10.0, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise CommandError(f"could not reach the receiver at {target}: {type(exc).__name__}: {exc}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = response.text[:200]
    result = {"url": target, "event_id": event["id"], "batch_id": batch_id, "status": response.status_code,
              "response": answer}
    if not response.is_success:
        detail = answer if isinstance(answer, str) else " ".join(
            str(answer.get(k)) for k in ("error", "reason") if isinstance(answer, dict) and answer.get(k)
        )
        raise CommandError(f"the receiver at {target} answered {response.status_code}: {detail}")
    outcome = answer.get("status") if isinstance(answer, dict) else answer
    _emit(res, result, f"{event_type} {event['id']} -> {response.status_code} {outcome}")


# -- config ------------------------------------------------------------------------

@cli.command("config")
@_json_option
@pass_res
def show_config(res: Resources) -> None:
    """Validate the settings and print them, secrets masked."""
    settings = res.settings
    shown = {
        "REDIS_URL": settings.redis_url or f"(embedded, under {settings.data_dir})",
        "AISTATS_API_KEY": "set" if settings.api_key else "unset",
        "AISTATS_BASE_URL": settings.base_url,
        "AISTATS_WEBHOOK_SECRET": f"{len(settings.webhook_secrets)} configured",
        "AISTATS_WEBHOOK_TOLERANCE": settings.webhook_tolerance,
        "AISTATS_ALLOW_UNSIGNED": settings.allow_unsigned,
        "PUBLIC_BASE_URL": settings.public_base_url,
        "QUERY_API_TOKEN": "set" if settings.query_api_token else "unset",
        "AISTATS_KEY_PREFIX": settings.key_prefix,
        "AISTATS_QUEUE": settings.queue_name,
        "AISTATS_MAX_BODY_BYTES": settings.max_body_bytes,
        "AISTATS_EVENT_RETENTION": settings.event_retention,
        "AISTATS_STALE_AFTER": settings.stale_after,
        "AISTATS_UPSTREAM_TIMEOUT": settings.upstream_timeout,
        "AISTATS_DATA_DIR": settings.data_dir,
        "LOG_LEVEL": logs.level_from_env(),
    }
    _emit(res, shown, [f"{name}={value}" for name, value in shown.items()])


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return its exit status."""
    return cli.main(args=argv, prog_name="python -m aistats_hooks", standalone_mode=False)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
