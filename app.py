"""The WSGI entry point for gunicorn: ``gunicorn app:app``."""

import sys

from aistats_hooks.errors import ConfigError
from aistats_hooks.web import create_app

try:
    app = create_app()
except ConfigError as exc:
    # One line naming the variable, no traceback (gunicorn would print one).
    print(f"aistats-hooks: configuration error: {exc}", file=sys.stderr)
    sys.exit(2)
