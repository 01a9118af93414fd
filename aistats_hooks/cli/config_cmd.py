"""``config``: validate the settings and show every one of them, secrets masked.

The list cannot drift from the code: it is every variable ``Settings.from_env``
reads (recorded while it reads them) plus every variable ``.env.example``
documents (the process settings: ``PORT``, ``WEB_CONCURRENCY``, ...). A
variable that names a ``Settings`` field shows the field's effective value;
the others show their value in the environment, or the documented default.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from .. import logs
from ..config import Settings
from ..urls import masked
from .core import Resources, emit, json_option, pass_res

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
# Variables whose field name is not the variable's name in lower case (with or without AISTATS_).
FIELD_OF = {
    "AISTATS_WEBHOOK_SECRET": "webhook_secrets",
    "AISTATS_QUEUE": "queue_name",
    "AISTATS_HANDLERS": "handler_modules",
    "AISTATS_ALERT_BATCH_USD": "alert_batch_nanos",
    "AISTATS_ALERT_DAILY_USD": "alert_daily_nanos",
}
_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|API_KEY")


class _Recording(dict):
    """The environment, remembering which names were asked for, in order."""

    def __init__(self, base: Mapping[str, str]) -> None:
        super().__init__(base)
        self.asked: dict[str, None] = {}

    def get(self, key: str, default: Any = None) -> Any:
        self.asked[key] = None
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.asked[key] = None
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked[key] = None
        return super().__contains__(key)


def settings_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """Return the variables ``Settings.from_env`` reads, in the order it reads them."""
    recording = _Recording(os.environ if env is None else env)
    try:
        Settings.from_env(recording)
    except Exception:  # noqa: BLE001 - the names read before a bad value still count; the caller validated
        pass
    return list(recording.asked)


def documented_defaults(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """Return ``.env.example``'s variables and their documented values, in file order."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    return dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", text, re.M))


def field_for(name: str) -> dataclasses.Field | None:
    """Return the ``Settings`` field variable ``name`` sets, if any."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    lower = name.lower()
    for candidate in (FIELD_OF.get(name), lower, lower.removeprefix("aistats_")):
        if candidate in fields:
            return fields[candidate]
    return None


def is_secret(name: str, fld: dataclasses.Field | None = None) -> bool:
    """Tell whether a variable's value must never be shown (``repr=False`` fields, secret-shaped names)."""
    return (fld is not None and not fld.repr) or bool(_SECRET_NAME.search(name))


def _show_field(settings: Settings, name: str, fld: dataclasses.Field) -> Any:
    value = getattr(settings, fld.name)
    if is_secret(name, fld):
        if isinstance(value, tuple):
            return f"{len(value)} configured"
        return "set" if value else "unset"
    if name == "REDIS_URL":
        return masked(value) if value else f"(embedded, under {settings.data_dir})"
    if isinstance(value, tuple):
        return ",".join(":".join(map(str, v)) if isinstance(v, tuple) else _shown(str(v)) for v in value)
    return _shown(value) if isinstance(value, str) else value


def _shown(value: str) -> str:
    """A URL (a destination may carry a password or a token in its query) masked; anything else as it is."""
    return masked(value) if "://" in value else value


def _show_raw(name: str, env: Mapping[str, str], default: str | None) -> Any:
    raw = env.get(name, "").strip()
    if name == "LOG_LEVEL":
        return logs.level_from_env(env)
    if is_secret(name):
        return "set" if raw else "unset"
    if "://" in raw:
        return ",".join(_shown(part) for part in raw.split(","))
    if raw:
        return raw
    return f"(default {default})" if default else None


def every_setting(settings: Settings, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return every setting by variable name: effective values, secrets masked."""
    env = os.environ if env is None else env
    documented = documented_defaults()
    shown: dict[str, Any] = {}
    # In .env.example's order; a variable read but not documented still shows, at the end.
    for name in dict.fromkeys(list(documented) + settings_variables(env)):
        fld = field_for(name)
        shown[name] = _show_field(settings, name, fld) if fld else _show_raw(name, env, documented.get(name))
    return shown


@click.command("config")
@json_option
@pass_res
def show_config(res: Resources) -> None:
    """Validate the settings and print every one of them, secrets masked."""
    shown = every_setting(res.settings)
    lines = [f"{name}={'' if value is None else value}" for name, value in shown.items()]
    warning = res.settings.legacy_key_warning()
    if warning:
        lines.append(f"warning: {warning}")
        shown = dict(shown, warnings=[warning])
    emit(res, shown, lines)


COMMANDS = (show_config,)
