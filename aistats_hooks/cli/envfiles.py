"""Where the CLI's settings come from besides the shell: ``.env``, then a running ``make run``'s session file.

One rule for every process: the ``.env`` file beside the Procfile is applied
the way honcho 2.0 applies it to the Procfile's processes (``honcho start``
copies the environment, then updates it with the file: a name set in ``.env``
wins over the same name exported; a line with an empty value is skipped), and
``make run`` applies it the same way. Then the session file ``make run``
writes (``$AISTATS_DATA_DIR/launcher.env``: the Redis socket, the sandbox's
keys, the endpoint it made, the handlers it runs) fills in what is still
unset, but only while that ``make run`` is running: its lock file tells. A
session file left by a stopped run names a socket that is gone; it is
ignored, with one line saying so.

Only ``main()`` (``python -m aistats_hooks``, ``bin/aistats-hooks``, the
installed ``aistats-hooks``) reads these files; ``cli`` called in-process
(the tests) sees the environment only. Nothing here imports honcho or the
launcher: the installed package has neither.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
from collections.abc import MutableMapping
from pathlib import Path

SESSION_FILE = "launcher.env"
LOCK_FILE = "launcher.lock"  # held (flock) by a running make run: aistats_hooks.launcher.lock
ROOT = Path(__file__).resolve().parents[2]


def root() -> Path | None:
    """Return the checkout's folder (the one with the Procfile), or None for an installed package."""
    return ROOT if (ROOT / "Procfile").exists() else None


def parse(content: str) -> dict[str, str]:
    """Parse ``KEY=value`` lines exactly as ``honcho.environ.parse`` (2.0) does (tests compare the two)."""
    values = {}
    for line in content.splitlines():
        tokens = list(shlex.shlex(line, posix=True))
        if len(tokens) < 3:  # "NAME=" (an empty value) included: it sets nothing
            continue
        name, op = tokens[:2]
        if op != "=" or not re.match(r"[A-Za-z_][A-Za-z_0-9]*", name):
            continue
        values[name] = "".join(tokens[2:]).replace(r"\n", "\n").replace(r"\t", "\t")
    return values


def read_env_file(path: Path) -> dict[str, str]:
    """Read a ``.env`` file ({} when there is none)."""
    try:
        return parse(path.read_text())
    except FileNotFoundError:
        return {}


def apply_env_file(env: MutableMapping[str, str], path: Path) -> None:
    """Apply a ``.env`` file as honcho 2.0 does: its values win over ``env``'s."""
    env.update(read_env_file(path))


def held(data_dir: Path) -> bool:
    """Tell whether a live ``make run`` owns ``data_dir`` (a shared lock taken and released at once)."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases the shared lock, if taken
    return False


def data_dir(env: MutableMapping[str, str], base: Path | None) -> Path:
    """Return ``AISTATS_DATA_DIR`` made absolute (relative to the checkout, as ``make run`` runs there)."""
    raw = env.get("AISTATS_DATA_DIR", "").strip() or ".data"
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return path


def load(env: MutableMapping[str, str] | None = None, base: Path | None = None) -> list[str]:
    """Complete ``env`` (default ``os.environ``) from ``.env`` and a live session file; return notices to print.

    ``base`` is the checkout's folder (default: this one, when it is a checkout).
    """
    env = os.environ if env is None else env
    base = root() if base is None else base
    if base is not None:
        apply_env_file(env, base / ".env")
    folder = data_dir(env, base)
    if base is not None or env.get("AISTATS_DATA_DIR", "").strip():
        env["AISTATS_DATA_DIR"] = str(folder)
    session = folder / SESSION_FILE
    if not session.exists():
        return []
    if not held(folder):
        return [f"ignoring {session}: the make run that wrote it is no longer running "
                "(start it again, or set REDIS_URL)"]
    for name, value in read_env_file(session).items():
        env.setdefault(name, value)
    return []
