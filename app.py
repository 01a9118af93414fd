"""The WSGI entry point for gunicorn: ``gunicorn app:app``."""

from aistats_hooks.config import exit_config_error
from aistats_hooks.errors import ConfigError
from aistats_hooks.web import create_app

try:
    app = create_app()
except ConfigError as exc:
    exit_config_error(exc)  # one line naming the variable, no traceback (gunicorn would print one)
