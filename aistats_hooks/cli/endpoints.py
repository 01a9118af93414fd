"""Managed webhook endpoints: ``endpoints create|list|test|delete`` and ``rotate-secret``.

The gateway delivers batch webhooks only to endpoints it manages: one URL,
its events and its signing secret, named by id (a UUID) when a batch is
created. The secret is shown once, on create and on rotation; these commands
store it in Redis (``endpoint_secrets``), where every web process verifies
with it, and never print it unless asked to write it to a file.

The gateway's endpoint routes take only a management key (``phaseo_v1_mk_...`` with
settings:read / settings:write), read from AISTATS_MANAGEMENT_KEY; an ordinary key is refused
there (401 management_key_required), so these commands never use AISTATS_API_KEY.
"""

from __future__ import annotations

import os
from typing import Any

import click

from .. import endpoint_secrets
from ..config import MANAGEMENT_KEY_HINT
from ..errors import AuthenticationError
from . import endpoint_probe
from .core import CommandError, Resources, emit, json_option, pass_res, webhook_url

# The service reconciles from retrieve, so it needs creation (to track early)
# and the terminal events; the gateway sends nothing else for batches.
DEFAULT_EVENTS = ("batch.created", "batch.completed", "batch.failed", "batch.cancelled")


def _events(ctx, param, values: tuple[str, ...]) -> list[str]:
    return [e.strip() for value in values for e in value.split(",") if e.strip()]


def _manage(res: Resources, method: str, *args, **kwargs) -> Any:
    """Call ``method`` of the management client; a refused key is one line saying what to set."""
    try:
        return getattr(res.management_client, method)(*args, **kwargs)
    except AuthenticationError as exc:
        raise CommandError(f"the gateway refused AISTATS_MANAGEMENT_KEY ({exc.reason or exc.status}): "
                           f"{MANAGEMENT_KEY_HINT}") from None


def _public(endpoint: dict[str, Any]) -> dict[str, Any]:
    """The endpoint as printed: never its secret."""
    return {k: v for k, v in dict(endpoint).items() if k != "signing_secret"}


def _store_secret(res: Resources, endpoint: dict[str, Any], secret_file: str | None) -> str:
    """Store the endpoint's new signing secret (and write it to ``secret_file``); return its fingerprint."""
    secret, endpoint_id = endpoint.get("signing_secret"), str(endpoint.get("id"))
    try:
        name = endpoint_secrets.add(res.store.redis, res.settings.key_prefix, secret, endpoint_id)
    except ValueError as exc:
        raise CommandError(f"{endpoint_id}: {exc}") from None
    if secret_file:
        _write_private(secret_file, secret + "\n")
    return name


def _write_private(path: str, text: str) -> None:
    """Write ``text`` to a new file only its owner can read (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


@click.group("endpoints")
def endpoints() -> None:
    """Create and manage the gateway's webhook endpoints for this service."""


@endpoints.command("create")
@click.option("--url", default=None, help="Where the gateway delivers (default: $PUBLIC_BASE_URL/webhooks/aistats).")
@click.option("--events", "events", multiple=True, callback=_events, metavar="TYPE[,TYPE]",
              help=f"Events to subscribe to (repeatable; default {','.join(DEFAULT_EVENTS)}).")
@click.option("--name", default="aistats-hooks", show_default=True)
@click.option("--secret-file", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the signing secret to this file (mode 0600), e.g. for AISTATS_WEBHOOK_SECRET.")
@json_option
@pass_res
def create(res: Resources, url: str | None, events: list[str], name: str, secret_file: str | None) -> None:
    """Create an endpoint upstream and store its signing secret where the receiver reads it."""
    settings = res.settings
    url = url or webhook_url(settings)
    res.store.redis.ping()  # the secret is shown once: be able to keep it before asking for it
    endpoint = _manage(res, "create_webhook_endpoint", url, events=list(events or DEFAULT_EVENTS), name=name)
    try:
        fingerprint = _store_secret(res, endpoint, secret_file)
    except Exception:
        raise CommandError(
            f"created {endpoint.get('id')} upstream but could not store its secret; "
            f"run `rotate-secret {endpoint.get('id')}` once Redis is back"
        ) from None
    out = dict(_public(endpoint), secret_fingerprint=fingerprint, secret_stored=True,
               env={"AISTATS_WEBHOOK_ENDPOINT_ID": endpoint.get("id")})
    emit(res, out, [
        f"created {endpoint.get('id')}  {endpoint.get('url')}  events={','.join(endpoint.get('events') or [])}",
        f"signing secret stored in Redis (fingerprint {fingerprint}); every web process verifies with it",
        *([f"signing secret also written to {secret_file} (0600)"] if secret_file else []),
        "set in production, for create-batch to name it by default:",
        f"  AISTATS_WEBHOOK_ENDPOINT_ID={endpoint.get('id')}",
    ])


@endpoints.command("list")
@json_option
@pass_res
def list_endpoints(res: Resources) -> None:
    """List the workspace's endpoints, and whether this service holds each one's secret."""
    listed = _manage(res, "list_webhook_endpoints")
    stored = {e["endpoint_id"] for e in endpoint_secrets.describe(res.store.redis, res.settings.key_prefix)
              if e.get("retire_at") is None}
    rows = [dict(_public(e), secret_stored=e.get("id") in stored) for e in listed.get("data") or []]
    lines = [f"{r.get('id')}  {r.get('status')}  {r.get('url')}  events={','.join(r.get('events') or [])}"
             f"  secret={'stored' if r['secret_stored'] else 'not stored here'}" for r in rows]
    emit(res, {"data": rows}, lines or ["no webhook endpoints"])


@endpoints.command("test")
@click.argument("endpoint_id")
@json_option
@pass_res
def test(res: Resources, endpoint_id: str) -> None:
    """Send a signed test delivery to the endpoint's URL, signed with its stored secret.

    The gateway has no test route: we sign it ourselves, as ``trigger`` does."""
    endpoint = _manage(res, "get_webhook_endpoint", endpoint_id)
    secret = endpoint_secrets.current(res.store.redis, res.settings.key_prefix, endpoint_id)
    if not secret:
        raise CommandError(f"{endpoint_id}: no signing secret stored here; run `rotate-secret {endpoint_id}` "
                           "to get and store one")
    result = endpoint_probe.send(endpoint, secret)
    ok = result["ok"]
    emit(res, result, f"{endpoint_id}: test delivery to {result['url']} {'succeeded' if ok else 'failed'}"
         + (f" (status {result.get('status_code')})" if result.get("status_code") is not None else ""))
    if not ok:
        raise CommandError(f"{endpoint_id}: the test delivery failed: {result.get('error') or result}")


@endpoints.command("delete")
@click.argument("endpoint_id")
@click.option("--grace", type=click.IntRange(0, 7 * 86400), default=endpoint_secrets.DEFAULT_GRACE_SECONDS,
              show_default=True, help="Seconds its stored secret keeps verifying (deliveries in flight).")
@json_option
@pass_res
def delete(res: Resources, endpoint_id: str, grace: int) -> None:
    """Delete an endpoint upstream; its stored secret retires after the grace period."""
    result = _manage(res, "delete_webhook_endpoint", endpoint_id)
    retired = endpoint_secrets.retire(res.store.redis, res.settings.key_prefix, endpoint_id, keep="", grace=grace)
    emit(res, dict(result, secrets_retiring=retired), f"deleted {endpoint_id}; {len(retired)} stored secret(s) "
         f"verify for {grace} s more")


@click.command("rotate-secret")
@click.argument("endpoint_id")
@click.option("--grace", type=click.IntRange(0, 7 * 86400), default=endpoint_secrets.DEFAULT_GRACE_SECONDS,
              show_default=True, help="Seconds the old secret keeps verifying after the switch.")
@click.option("--secret-file", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the new signing secret to this file (mode 0600).")
@json_option
@pass_res
def rotate_secret(res: Resources, endpoint_id: str, grace: int, secret_file: str | None) -> None:
    """Give an endpoint a new signing secret; old and new both verify during the switch."""
    res.store.redis.ping()
    endpoint = _manage(res, "rotate_webhook_endpoint_secret", endpoint_id)
    fingerprint = _store_secret(res, endpoint, secret_file)
    retired = endpoint_secrets.retire(res.store.redis, res.settings.key_prefix, endpoint_id,
                                      keep=fingerprint, grace=grace)
    emit(res, dict(_public(endpoint), secret_fingerprint=fingerprint, secrets_retiring=retired, grace=grace), [
        f"{endpoint_id}: new signing secret stored (fingerprint {fingerprint}); the gateway signs with it now",
        f"{len(retired)} previous secret(s) keep verifying for {grace} s",
        "a secret set in AISTATS_WEBHOOK_SECRET is not changed: update it by hand if you use one",
    ])


COMMANDS = [endpoints, rotate_secret]
