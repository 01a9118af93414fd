"""What every command shares: lazy resources, one-line failures, ``--json`` output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click
from redis.exceptions import RedisError

from .. import logs
from ..config import EXIT_CONFIG, Settings, config_error_message
from ..urls import masked as mask_url
from ..rules.delivery import EVENT_FAMILIES, EVENT_KINDS
from ..errors import AIStatsError, ConfigError, HooksError

EXIT_ERROR = 1
WEBHOOK_PATH = "/webhooks/aistats"


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
        self._management = None

    @property
    def settings(self) -> Settings:
        """Return the settings, validated on first use."""
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    @property
    def store(self):
        """Return the store, connected on first use."""
        if self._store is None:
            from ..redis_conn import connect
            from ..store import Store

            self._store = Store(connect(self.settings), self.settings)
        return self._store

    @property
    def client(self):
        """Return the gateway client, built on first use."""
        if self._client is None:
            from ..sdk import AIStats

            settings = self.settings
            self._client = AIStats(settings.require_api_key(), settings.base_url, timeout=settings.upstream_timeout)
        return self._client

    @property
    def management_client(self):
        """Return the client for /v1/webhook-endpoints, built with AISTATS_MANAGEMENT_KEY on first use."""
        if self._management is None:
            from ..sdk import AIStats

            settings = self.settings
            self._management = AIStats(settings.require_management_key(), settings.base_url,
                                       timeout=settings.upstream_timeout)
        return self._management

    def close(self) -> None:
        """Close what was opened."""
        if self._management is not None:
            self._management.close()
        if self._client is not None:
            self._client.close()
        if self._store is not None:
            self._store.redis.close()


pass_res = click.make_pass_decorator(Resources, ensure=True)


class HooksCLI(click.Group):
    """A click group whose every failure is one line and a meaningful exit status."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: D102
        code = self._run(args, prog_name, complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(self, args, prog_name, complete_var, **extra) -> int:
        argv = list(sys.argv[1:] if args is None else args)
        # --json anywhere (before or after the command): errors are JSON too.
        as_json = "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv
        code = self._dispatch(args, prog_name, complete_var, **extra)
        if isinstance(code, tuple):
            message, code = code
            _fail(message, code, as_json=as_json)
        return code

    def _dispatch(self, args, prog_name, complete_var, **extra) -> int | tuple[str, int]:
        """Run the command; return its exit status, or (one-line message, status) on failure."""
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help())
            return 0
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            return exc.format_message() + hint, EXIT_ERROR
        except click.ClickException as exc:
            return exc.format_message(), exc.exit_code or EXIT_ERROR
        except click.Abort:
            return "aborted", EXIT_ERROR
        except ConfigError as exc:
            return config_error_message(exc), EXIT_CONFIG
        except AIStatsError as exc:
            return f"gateway error ({type(exc).__name__}): {exc}", EXIT_ERROR
        except RedisError as exc:
            return redis_failure(exc), EXIT_ERROR
        except HooksError as exc:
            return f"{type(exc).__name__}: {exc}", EXIT_ERROR
        except (ValueError, OSError) as exc:
            return str(exc) or type(exc).__name__, EXIT_ERROR
        except KeyboardInterrupt:
            return "interrupted", 130
        return rv if isinstance(rv, int) else 0


def redis_failure(exc: RedisError) -> str:
    """One line naming the Redis the CLI tried and why it failed: unreachable is said as such."""
    import os

    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeout

    if os.environ.get("REDIS_SENTINELS", "").strip():
        where = f"through the Sentinels {os.environ['REDIS_SENTINELS'].strip()}"
    elif os.environ.get("REDIS_URL", "").strip():
        where = f"at {mask_url(os.environ['REDIS_URL'].strip())} (REDIS_URL)"
    else:
        where = "(the embedded one under AISTATS_DATA_DIR)"
    if isinstance(exc, (RedisConnectionError, RedisTimeout)):
        return (f"Redis is unreachable {where}: {type(exc).__name__}: {exc} "
                "(is make run, or that Redis, running?)")
    return f"Redis {where} failed: {type(exc).__name__}: {exc}"


def _fail(message: str, code: int, *, as_json: bool = False) -> int:
    """Print one redacted line on stderr (with --json, a JSON object ``{"error": {...}}``); return ``code``."""
    line = logs.Redactor(logs.secrets_from_env())(" ".join(str(message).split()))
    if as_json:
        click.echo(json.dumps({"error": {"message": line, "exit_code": code}}), err=True)
    else:
        click.echo(f"aistats-hooks: {line}", err=True)
    return code


def json_option(func: Callable) -> Callable:
    """Accept ``--json`` after the command too."""

    def set_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            ctx.ensure_object(Resources).json = True

    return click.option(
        "--json", "json_output", is_flag=True, expose_value=False, callback=set_json, is_eager=True,
        help="Print machine-readable JSON.",
    )(func)


def emit(res: Resources, data: Any, human: str | list[str] | None = None) -> None:
    """Print ``data`` as JSON with ``--json``, else the human text."""
    if res.json or human is None:
        click.echo(json.dumps(data, separators=(",", ":"), default=str))
        return
    for line in [human] if isinstance(human, str) else human:
        click.echo(line)


def event_type(value: str, *, loose: bool = False) -> str:
    """Return ``value`` as ``family.kind``; ``loose`` takes a bare kind and a ``:suffix`` too."""
    family, sep, kind = value.partition(".")
    if loose:
        # As `trigger` accepts: "completed" is batch.completed, "batch.progress:50" a delivery key.
        family, kind = (family, kind) if sep else ("batch", value)
        kind = kind.split(":")[0]
    if family not in EVENT_FAMILIES or kind not in EVENT_KINDS:
        raise click.BadParameter(
            f"{value!r} is not an event type (batch.<kind> or job.<kind>, kind one of {', '.join(EVENT_KINDS)})"
        )
    return f"{family}.{kind}"


def webhook_url(settings: Settings) -> str:
    """Return this service's webhook URL, from ``PUBLIC_BASE_URL``."""
    if not settings.public_base_url:
        raise ConfigError(
            "PUBLIC_BASE_URL",
            "required to build this service's webhook URL ($PUBLIC_BASE_URL/webhooks/aistats; or pass --url)",
        )
    return settings.public_base_url.rstrip("/") + WEBHOOK_PATH
