"""Fixtures and helpers the CLI tests share: a real sandbox, a served receiver, an operator's environment.

The environment has a managed webhook endpoint, created through the CLI's own
`endpoints create` (the gateway delivers only to managed endpoints), whose
signing secret the command stored where the receiver reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from aistats_hooks.cli import cli
from aistats_hooks.sandbox import SandboxServer
from aistats_hooks.web import create_app
from tests.helpers import Served
from workers import context

ROOT = Path(__file__).resolve().parents[2]
# Variables the CLI reads; cleared so the developer's own environment cannot leak in.
CLEARED = (
    "REDIS_URL", "AISTATS_API_KEY", "AISTATS_BASE_URL", "AISTATS_WEBHOOK_SECRET", "AISTATS_WEBHOOK_TOLERANCE",
    "AISTATS_ALLOW_UNSIGNED", "PUBLIC_BASE_URL", "QUERY_API_TOKEN", "AISTATS_KEY_PREFIX", "AISTATS_QUEUE",
    "AISTATS_UPSTREAM_TIMEOUT", "AISTATS_DATA_DIR", "PORT", "LOG_LEVEL", "AISTATS_WEBHOOK_ENDPOINT_ID",
    "AISTATS_MANAGEMENT_KEY",
)


@pytest.fixture
def sandbox(settings):
    # accept_unknown_files: most commands here are not about uploads (test_upload is).
    server = SandboxServer(api_key=settings.api_key, speed=600.0, seed=7, accept_unknown_files=True).start()
    yield server
    server.stop()


@pytest.fixture
def receiver(settings):
    app = create_app(settings)
    served = Served(app)
    yield served, app.extensions["aistats"]
    served.stop()


@pytest.fixture
def env(settings, sandbox, receiver, monkeypatch):
    """The environment of an operator's shell pointed at this test's Redis, sandbox and receiver."""
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    values = {
        "REDIS_URL": settings.redis_url,
        "AISTATS_API_KEY": settings.api_key,
        "AISTATS_MANAGEMENT_KEY": sandbox.management_key,
        "AISTATS_BASE_URL": sandbox.base_url,
        "AISTATS_WEBHOOK_SECRET": ",".join(settings.webhook_secrets + ("whsec_old_rotated",)),
        "QUERY_API_TOKEN": settings.query_api_token,
        "AISTATS_KEY_PREFIX": settings.key_prefix,
        "AISTATS_QUEUE": settings.queue_name,
        "PUBLIC_BASE_URL": receiver[0].url,
    }
    result = CliRunner().invoke(cli, ["--json", "endpoints", "create"], env=values, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    values["AISTATS_WEBHOOK_ENDPOINT_ID"] = json.loads(result.stdout)["id"]
    # The in-process RQ worker of some tests builds its context from os.environ too.
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    context.current.cache_clear()
    yield values
    context.current.cache_clear()


@pytest.fixture
def store(receiver):
    return receiver[1]


def run(env: dict, *args: str, **overrides):
    """Invoke the CLI with ``env`` (plus overrides; None removes a variable)."""
    full = {**env, **overrides}
    result = CliRunner().invoke(cli, list(args), env=full, catch_exceptions=False)
    return result


def one_line_error(result, code: int = 1) -> str:
    """Assert the invocation failed with ``code`` and exactly one line on stderr; return it."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert lines[0].startswith("aistats-hooks: ")
    return lines[0]


def create(env, *extra: str, outcome: str = "completed", duration: int = 120) -> str:
    result = run(env, "create-batch", "--endpoint", "responses", "--input-file-id", "file_cli",
                 "--metadata", f"sandbox_outcome={outcome}", "--metadata", f"sandbox_duration_s={duration}", *extra)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def sandbox_truth(sandbox, settings, batch_id: str) -> dict:
    resp = httpx.get(f"{sandbox.url}/_sandbox/batches/{batch_id}",
                     headers={"Authorization": f"Bearer {settings.api_key}"})
    resp.raise_for_status()
    return resp.json()
