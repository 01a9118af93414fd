"""``config``: validate the settings and show them, secrets masked."""

from __future__ import annotations

import click

from .. import logs
from .core import Resources, emit, json_option, pass_res


@click.command("config")
@json_option
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
    emit(res, shown, [f"{name}={value}" for name, value in shown.items()])


COMMANDS = (show_config,)
