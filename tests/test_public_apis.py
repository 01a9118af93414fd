"""The service stands on the public APIs of RQ, redis-py, gunicorn, werkzeug and Flask.

No module of ours imports a name starting with ``_`` from them, or reaches one through
a name it imported from them, or through the objects they hand us (a job, a queue, a
worker, a registry, a pipeline, a connection, a request, the app). An upgrade of any of
them then breaks only what they document as changed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = ("rq", "redis", "gunicorn", "werkzeug", "flask")
# Names our code gives the objects those projects hand it.
THEIR_OBJECTS = {"job", "queue", "worker", "registry", "pipe", "pipeline", "conn", "connection", "redis",
                 "request", "response", "app", "cfg", "arbiter", "scheduler"}
SOURCES = ["app.py", "aistats_hooks", "workers", "bench"]


def theirs(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in PROJECTS


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def violations(tree: ast.AST, path: str) -> list[str]:
    found: list[str] = []
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and theirs(node.module):
            if any(private(part) for part in node.module.split(".")):
                found.append(f"{path}:{node.lineno} imports from {node.module}")
            for alias in node.names:
                if private(alias.name):
                    found.append(f"{path}:{node.lineno} imports {node.module}.{alias.name}")
                aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if theirs(alias.name):
                    if any(private(part) for part in alias.name.split(".")):
                        found.append(f"{path}:{node.lineno} imports {alias.name}")
                    aliases.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and (root.id in aliases or root.id in THEIR_OBJECTS):
                found.append(f"{path}:{node.lineno} uses {root.id}...{node.attr}")
    return found


def python_files() -> list[Path]:
    files: list[Path] = []
    for source in SOURCES:
        path = ROOT / source
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return files


def test_no_private_name_of_rq_redis_gunicorn_werkzeug_or_flask_is_used():
    found = []
    for path in python_files():
        found += violations(ast.parse(path.read_text(), str(path)), str(path.relative_to(ROOT)))
    assert found == []


def test_the_check_finds_what_it_looks_for():
    sample = (
        "from rq.job import Job, _job_stack\n"
        "import rq._private\n"
        "from redis import connection as rc\n"
        "def f(job, pipe):\n"
        "    job._result = 1\n"
        "    rc._HiredisParser\n"
        "    job.id, job.__class__\n"
    )
    assert violations(ast.parse(sample), "x.py") == [
        "x.py:1 imports rq.job._job_stack", "x.py:2 imports rq._private",
        "x.py:5 uses job..._result", "x.py:6 uses rc..._HiredisParser",
    ]


def test_no_lua_of_ours_names_an_rq_key():
    # RQ's keys are written by RQ alone: no script of ours names its key space.
    for path in python_files():
        text = path.read_text()
        if "redis.call(" in text:
            assert "rq:" not in text, path
