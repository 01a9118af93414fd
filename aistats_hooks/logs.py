"""JSON logs: one object per line, with ids where known and never a secret.

Every process of aistats-hooks logs the same way:

- ``configure(level, secrets=...)`` puts one JSON handler on the root logger
  (the CLI, the launcher, and the web app under gunicorn call it);
- ``dict_config(level, secrets)`` is the same setup as a ``logging.config``
  dict, for RQ's ``DICT_CONFIG`` setting (``rq worker`` and ``rq cron``);
- ``GunicornLogger`` turns gunicorn's own lines into JSON
  (``gunicorn --logger-class aistats_hooks.logs.GunicornLogger``);
- ``web.request_log.init_app(app)`` gives every request an id and logs one
  line per request with its ``request_id`` and the ``event_id`` / ``batch_id``
  it concerns: DEBUG for a success, INFO for a refusal, ERROR for a failure.

Pass ids with ``extra=``: ``log.info("queued", extra={"batch_id": b})``.
The values of the configured webhook secrets, the API key, the query
token and the secret parts of every configured URL (``REDIS_URL``'s
password, a forwarding, alert or archive destination's password, token and
query values: ``urls.secrets_in``) are replaced by ``[redacted]``
wherever they appear in a line, as are ``whsec_...`` strings, bearer tokens
and the password of any ``scheme://user:password@`` URL, whoever logged them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from gunicorn.glogging import Logger as GunicornBaseLogger

from . import tracing
from .urls import secrets_in
from .errors import ConfigError

REDACTED = "[redacted]"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The ids a line may carry, first after the fixed fields so they are easy to grep.
ID_FIELDS = ("request_id", "event_id", "batch_id", "job_id")
# Shorter values are not redacted by value: they would blot out ordinary words.
MIN_SECRET_LENGTH = 6
# Attributes every LogRecord has; anything else came in through ``extra=``.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}
# Secret-shaped strings are hidden even when their value is not configured here.
_PATTERNS = (
    re.compile(r"whsec_[A-Za-z0-9_\-+/=]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]{6,}"),
    # A URL's password (redis://user:password@host), whatever its length.
    re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s\"']*:)[^@/\s\"']+(?=@)"),
)
_HANDLER_FLAG = "_aistats_json"
# Libraries whose INFO lines are one per HTTP call: noise next to our own per-request lines.
QUIET_LOGGERS = ("httpx", "httpcore")


def level_from_env(env: Mapping[str, str] | None = None) -> str:
    """Return ``LOG_LEVEL`` (default INFO), or raise ``ConfigError`` naming it."""
    env = os.environ if env is None else env
    raw = env.get("LOG_LEVEL", "").strip().upper() or "INFO"
    if raw == "WARN":
        raw = "WARNING"
    if raw not in LEVELS:
        raise ConfigError("LOG_LEVEL", f"expected one of {', '.join(LEVELS)}, got {raw.lower()!r}")
    return raw


def secrets_from_env(env: Mapping[str, str] | None = None) -> list[str]:
    """Return the secret values named by the environment, unvalidated.

    Read raw (not through ``Settings``) so that even a process whose settings
    fail to validate never logs them.
    """
    env = os.environ if env is None else env
    values = [s.strip() for s in env.get("AISTATS_WEBHOOK_SECRET", "").split(",")]
    values += [env.get("AISTATS_API_KEY", "").strip(), env.get("QUERY_API_TOKEN", "").strip(),
               env.get("AISTATS_FORWARD_SECRET", "").strip()]
    for name in ("REDIS_URL", "AISTATS_FORWARD_URLS", "AISTATS_ALERT_URLS", "AISTATS_ARCHIVE_URL"):
        for url in env.get(name, "").split(","):
            values += secrets_in(url.strip())
    return [v for v in values if v]


def secrets_of(settings: Any) -> list[str]:
    """Return the secret values of a ``Settings``."""
    values = list(getattr(settings, "webhook_secrets", ()) or ())
    values += [getattr(settings, "api_key", None), getattr(settings, "query_api_token", None),
               getattr(settings, "session_secret", None), getattr(settings, "redis_sentinel_password", None),
               getattr(settings, "forward_secret", None)]
    urls = [getattr(settings, "redis_url", None), getattr(settings, "archive_url", None)]
    urls += list(getattr(settings, "forward_urls", ()) or ()) + list(getattr(settings, "alert_urls", ()) or ())
    for url in urls:
        values += secrets_in(url)  # a destination's password, token or query values
    return [v for v in values if v]


class Redactor:
    """Replace secret values (and secret-shaped strings) in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH}
        # Longest first, so a secret containing another is hidden whole.
        self.values = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, REDACTED)
        text = _PATTERNS[0].sub(REDACTED, text)
        text = _PATTERNS[1].sub(lambda m: m.group(1) + REDACTED, text)
        return _PATTERNS[2].sub(lambda m: m.group(1) + REDACTED, text)


def _message(record: logging.LogRecord) -> str:
    """Return a record's message, or its raw parts: a bad format string must not lose the line."""
    try:
        return record.getMessage()
    except Exception:
        return f"{record.msg!r} {record.args!r}"


class RedactFilter(logging.Filter):
    """A handler filter that redacts a record's message, arguments and extras in place."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redact = Redactor(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redact(_message(record)), ()
        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRS and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line."""

    def __init__(self, secrets: Iterable[str] = (), *, static: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.redact = Redactor(secrets)
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds")
        line: dict[str, Any] = {"ts": ts.replace("+00:00", "Z"), "level": record.levelname.lower(),
                                "logger": record.name, "msg": _message(record)}
        for key in ID_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        line.update(tracing.log_ids())  # inside a span: its trace_id and span_id (tracing off: nothing)
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in line and not key.startswith("_"):
                line[key] = value
        line.update({k: v for k, v in self.static.items() if k not in line})
        line["pid"] = record.process
        if record.exc_info:
            line["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            line["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        text = json.dumps(line, default=str, ensure_ascii=False, separators=(",", ":"))
        # Last pass over the whole line: whatever path a secret took, it stops here.
        return self.redact(text)


def make_handler(
    level: str | int = "INFO", secrets: Iterable[str] = (), *, stream=None, static: Mapping[str, Any] | None = None
) -> logging.Handler:
    """Return a stream handler writing redacted JSON lines."""
    secrets = list(secrets)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter(secrets, static=static))
    handler.addFilter(RedactFilter(secrets))
    handler.setLevel(level)
    setattr(handler, _HANDLER_FLAG, True)
    return handler


def configure(level: str | int = "INFO", *, secrets: Iterable[str] | None = None, stream=None, force: bool = True,
              static: Mapping[str, Any] | None = None) -> logging.Handler | None:
    """Send every log record of the process to one JSON handler on the root logger.

    ``secrets`` defaults to the values named by the environment. Calling it
    again replaces the handler it installed before. With ``force=False`` it
    leaves alone a root logger that already has someone else's handlers (an
    app embedded in a test runner), and returns None.
    """
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, _HANDLER_FLAG, False)]
    if not force and len(root.handlers) > len(ours):
        return None
    for handler in ours:
        root.removeHandler(handler)
    handler = make_handler(level, secrets_from_env() if secrets is None else secrets, stream=stream, static=static)
    root.addHandler(handler)
    root.setLevel(level)
    _quiet_libraries(level)
    return handler


def _quiet_libraries(level: str | int) -> None:
    """Keep per-HTTP-call library lines out, unless debugging."""
    numeric = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if numeric == logging.DEBUG else logging.WARNING)


def dict_config(level: str = "INFO", secrets: Iterable[str] = ()) -> dict[str, Any]:
    """Return a ``logging.config.dictConfig`` dict of the same setup (RQ's ``DICT_CONFIG``)."""
    secrets = list(secrets)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactFilter, "secrets": secrets}},
        "formatters": {"json": {"()": JsonFormatter, "secrets": secrets}},
        "handlers": {"json": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "level": level,
                              "formatter": "json", "filters": ["redact"]}},
        # RQ puts its own handlers on rq.worker unless one is effective already:
        # the root handler is, so every line goes out once, as JSON.
        "root": {"level": level, "handlers": ["json"]},
        "loggers": {name: {"level": "DEBUG" if level == "DEBUG" else "WARNING"} for name in QUIET_LOGGERS},
    }


class GunicornLogger(GunicornBaseLogger):
    """gunicorn's logger with its handlers switched to redacted JSON lines."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        secrets = secrets_from_env()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter(secrets))
                if not any(isinstance(f, RedactFilter) for f in handler.filters):
                    handler.addFilter(RedactFilter(secrets))
