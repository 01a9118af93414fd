"""`pip install .` gives the service and its command, without the development tools."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools leaves build/ and *.egg-info beside the sources it builds.
    source = out / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", ".data", "__pycache__", "build",
                                                                "*.egg-info", ".hypothesis", "results"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--disable-pip-version-check",
                    "-w", str(out), str(source)], check=True, cwd=out, capture_output=True)
    (found,) = out.glob("aistats_hooks-*.whl")
    return found


def test_the_wheel_carries_the_service_and_not_the_dev_tools(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "aistats_hooks/web/dashboard/templates/dashboard/batch.html" in names
    assert "aistats_hooks/web/dashboard/static/dashboard.css" in names
    assert "workers/settings.py" in names
    assert not [n for n in names if n.startswith(("aistats_hooks/sandbox/", "aistats_hooks/launcher/", "tests/",
                                                   "bench/"))]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "aistats-hooks = aistats_hooks.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    runtime = [r for r in requires if "extra ==" not in r]
    assert any(r.startswith("Requires-Dist: rq") for r in runtime)
    assert not [r for r in runtime if any(t in r for t in ("pytest", "selenium", "phaseo", "honcho"))]


def test_the_installed_command_runs_outside_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--disable-pip-version-check",
                    "--target", str(target), str(wheel)], check=True, capture_output=True)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import aistats_hooks, pathlib;"
            "assert pathlib.Path(aistats_hooks.__file__).is_relative_to(sys.argv[1]), aistats_hooks.__file__;"
            "from aistats_hooks.cli import main; sys.argv = ['aistats-hooks', '--help']; main()")
    done = subprocess.run([sys.executable, "-c", code, str(target)], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout
