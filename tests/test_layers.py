"""The package's layers, checked: what each part may import.

- ``aistats_hooks.rules`` is pure: the standard library, its own modules and the
  exception tree (``aistats_hooks.errors``), nothing else (no Redis, RQ, httpx, Flask, store);
- the SDK (``aistats_hooks.sdk``) knows the gateway, not this service's store or web app;
- the store knows neither the web app nor the workers;
- nothing in the package imports the web app but the web app, the CLI and the entry points.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "aistats_hooks"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}
    return found


def of(sub: str) -> list[Path]:
    return sorted((PACKAGE / sub).rglob("*.py"))


def test_the_rules_are_pure():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for path in of("rules"):
        for target in imports(path):
            top = target.split(".")[0]
            if top in stdlib:
                continue
            assert target.startswith(("aistats_hooks.rules", "aistats_hooks.errors")), (path, target)


def test_the_sdk_knows_the_gateway_not_the_service():
    for path in of("sdk"):
        for target in imports(path):
            assert not target.startswith(("aistats_hooks.store", "aistats_hooks.web", "aistats_hooks.cli",
                                          "workers", "redis", "rq", "flask")), (path, target)


def test_the_store_knows_neither_the_web_app_nor_the_workers():
    for path in of("store"):
        for target in imports(path):
            assert not target.startswith(("aistats_hooks.web", "aistats_hooks.cli", "workers", "flask")), (path, target)


def test_only_the_web_app_and_the_entry_points_import_the_web_app():
    allowed = ("aistats_hooks/web/", "aistats_hooks/cli/", "aistats_hooks/launcher/", "aistats_hooks/sandbox/")
    for path in sorted(PACKAGE.rglob("*.py")):
        if str(path.relative_to(ROOT)).startswith(allowed):
            continue
        for target in imports(path):
            assert not target.startswith("aistats_hooks.web"), (path, target)


def test_the_check_resolves_relative_imports():
    sample = ROOT / "aistats_hooks" / "rules" / "merge.py"
    found = imports(sample)
    assert "aistats_hooks.rules.billing" in found and all(not t.startswith(".") for t in found)
