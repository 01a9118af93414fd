"""The CLI's settings besides the shell: `.env` as honcho 2.0 applies it, a live `make run`'s session file only
(issue 28, item 3)."""

from __future__ import annotations

import os
import subprocess
import sys

from aistats_hooks.cli import envfiles
from aistats_hooks.launcher import lock
from tests.cli.conftest import CLEARED, ROOT


def checkout(tmp_path, dotenv: str = "", session: str = ""):
    (tmp_path / "Procfile").write_text("web: true\n")
    (tmp_path / ".env").write_text(dotenv)
    data = tmp_path / ".data"
    data.mkdir()
    if session:
        (data / envfiles.SESSION_FILE).write_text(session)
    return data


def test_dotenv_wins_over_the_environment_as_under_honcho(tmp_path):
    # honcho 2.0's `start`: os.environ.copy(), then .update(the .env file); an empty value is no assignment.
    checkout(tmp_path, "PORT=8123\nAISTATS_KEY_PREFIX=fromfile\nREDIS_URL=\n")
    env = {"PORT": "9000", "REDIS_URL": "redis://exported:6379/0"}
    assert envfiles.load(env, tmp_path) == []
    assert env["PORT"] == "8123" and env["AISTATS_KEY_PREFIX"] == "fromfile"
    assert env["REDIS_URL"] == "redis://exported:6379/0"
    assert env["AISTATS_DATA_DIR"] == str(tmp_path / ".data")  # relative: to the checkout, where make run runs


def test_a_live_session_fills_in_what_is_unset(tmp_path):
    data = checkout(tmp_path, session="REDIS_URL=unix:///run/x.sock\nAISTATS_HANDLERS=examples.handlers\nPORT=1\n")
    owner = lock.acquire(data)
    try:
        env = {"PORT": "8000"}
        assert envfiles.load(env, tmp_path) == []
        assert env["REDIS_URL"] == "unix:///run/x.sock" and env["AISTATS_HANDLERS"] == "examples.handlers"
        assert env["PORT"] == "8000"
    finally:
        os.close(owner)


def test_a_stale_session_is_ignored_with_one_line(tmp_path):
    data = checkout(tmp_path, session="REDIS_URL=unix:///gone/redis.sock\n")
    os.close(lock.acquire(data))  # a make run that has stopped: the lock file stays, nobody holds it
    env: dict[str, str] = {}
    notices = envfiles.load(env, tmp_path)
    assert notices == [f"ignoring {data / 'launcher.env'}: the make run that wrote it is no longer running "
                       "(start it again, or set REDIS_URL)"]
    assert "REDIS_URL" not in env


def test_the_cli_says_it_ignores_a_stale_session_and_works_on(tmp_path):
    """`list` after `make run` stopped: not a dead socket, the data folder's own Redis."""
    data = tmp_path / "data"
    data.mkdir()
    (data / envfiles.SESSION_FILE).write_text("REDIS_URL=unix:///gone/redis.sock\n")
    env = {k: v for k, v in os.environ.items() if k not in CLEARED and not k.startswith("AISTATS_")}
    env["AISTATS_DATA_DIR"] = str(data)
    result = subprocess.run([str(ROOT / "bin" / "aistats-hooks"), "list"], env=env, capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == (f"aistats-hooks: ignoring {data / 'launcher.env'}: the make run that "
                                             "wrote it is no longer running (start it again, or set REDIS_URL)")
    assert "Traceback" not in result.stderr


def test_the_parser_is_honchos():
    """The installed package has no honcho: its copy must read every line as honcho 2.0 does."""
    from honcho.environ import parse as honcho_parse

    content = ("A=1\nB = two words\nC='quoted # not a comment'\nD=\"x\\\\ny\"\nE=\n# F=commented\nexport G=1\n"
               "H=a=b\n1BAD=x\nI=x # trailing\nJ=tab\\\\tend\nK=\"a b\" c\n")
    assert envfiles.parse(content) == honcho_parse(content)
    assert envfiles.parse(content)["A"] == "1" and "E" not in envfiles.parse(content)
