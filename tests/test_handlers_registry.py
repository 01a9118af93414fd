"""Registering handlers: @on names real transitions, modules load or fail with one clear error."""

from __future__ import annotations

import sys
import textwrap

import pytest

from aistats_hooks import handlers
from aistats_hooks.errors import ConfigError


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("reg_")]:
        del sys.modules[name]
    for name in [k for k in handlers._REGISTRY if k.startswith("reg_")]:
        del handlers._REGISTRY[name]


def write(folder, name, body):
    (folder / f"{name}.py").write_text(textwrap.dedent(body))


def test_a_module_registers_its_handlers(module_dir):
    write(module_dir, "reg_ok", """
        from aistats_hooks.handlers import on

        @on("batch.completed", "batch.failed")
        def archive(batch, ctx):
            return batch["id"]

        @on("batch.billing_settled")
        def book(batch, ctx):
            pass
    """)
    loaded = {h.name: h for h in handlers.load(["reg_ok"])}
    assert loaded["reg_ok.archive"].transitions == ("batch.completed", "batch.failed")
    assert [h.name for h in handlers.for_transition("batch.billing_settled") if h.name.startswith("reg_")] == [
        "reg_ok.book"]
    assert handlers.get("reg_ok.archive").func({"id": "b1"}, None) == "b1"


@pytest.mark.parametrize("source,needle", [
    ('from aistats_hooks.handlers import on\n@on("batch.finished")\ndef f(b, c): pass\n', "'batch.finished'"),
    ('from aistats_hooks.handlers import on\n@on()\ndef f(b, c): pass\n', "(none given)"),
    ("import not_a_module_anywhere\n", "ModuleNotFoundError"),
    ("raise RuntimeError('boom\\nsecond line')\n", "RuntimeError: boom"),
])
def test_a_bad_module_is_one_config_error(module_dir, source, needle):
    (module_dir / "reg_bad.py").write_text(source)
    with pytest.raises(ConfigError) as caught:
        handlers.load(["reg_bad"])
    message = str(caught.value)
    assert "AISTATS_HANDLERS" in message and "reg_bad" in message and needle in message and "\n" not in message


def test_missing_module_is_a_config_error():
    with pytest.raises(ConfigError, match="cannot import 'reg_missing_mod'"):
        handlers.load(["reg_missing_mod"])


def test_idempotency_key_is_stable_and_distinct():
    key = handlers.idempotency_key("b1", "batch.completed", "m.f")
    assert key == handlers.idempotency_key("b1", "batch.completed", "m.f")
    assert len({key, handlers.idempotency_key("b1", "batch.failed", "m.f"),
                handlers.idempotency_key("b2", "batch.completed", "m.f"),
                handlers.idempotency_key("b1", "batch.completed", "m.g"),
                handlers.idempotency_key("b1", "batch.completed", "m.f", "1-1")}) == 5
