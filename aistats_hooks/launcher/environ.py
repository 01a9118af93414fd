"""What a fresh machine lacks, checked and filled in: settings, ``.env``, secrets, a free port."""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Mapping
from pathlib import Path

from ..config import Settings, int_setting
from ..forward_settings import generate_secret as generate_forward_secret

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PORT = 8000
SECRETS_FILE = "secrets.json"
# The secrets the launcher makes up when the environment has none, kept for the next start.
GENERATED = {
    "AISTATS_WEBHOOK_SECRET": lambda: "whsec_" + secrets.token_hex(24),
    "QUERY_API_TOKEN": lambda: "qt_" + secrets.token_urlsafe(24),
    "AISTATS_SESSION_SECRET": lambda: secrets.token_urlsafe(32),
    "AISTATS_FORWARD_SECRET": generate_forward_secret,  # whsec_ + base64, as Standard Webhooks defines
}


def validate(env: Mapping[str, str]) -> tuple[Settings, int]:
    """Check every setting any process will read; return the settings and the port."""
    from .. import logs

    settings = Settings.from_env(env)
    logs.level_from_env(env)
    port = int_setting(env, "PORT", DEFAULT_PORT, low=1, high=65535)
    int_setting(env, "AISTATS_SANDBOX_PORT", 0, low=0, high=65535)
    int_setting(env, "AISTATS_DEMO_BATCHES", 0, low=0, high=50)
    int_setting(env, "WEB_CONCURRENCY", 2, low=1, high=64)
    return settings, port


def read_env_file(path: Path) -> dict[str, str]:
    """Read a ``.env`` file (KEY=value lines) the way honcho does (one parser with the CLI: ``cli.envfiles``)."""
    from ..cli.envfiles import read_env_file as read

    return read(path)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port nothing listens on right now (the kernel's pick; the launcher, tests and bench share it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """Tell whether ``host:port`` cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def load_or_create_secrets(data_dir: Path, env: dict[str, str]) -> list[str]:
    """Fill in the webhook secret and query token from ``.data`` or fresh; return what was generated."""
    path = data_dir / SECRETS_FILE
    try:
        kept = json.loads(path.read_text())
        kept = kept if isinstance(kept, dict) else {}
    except (FileNotFoundError, ValueError):
        kept = {}
    generated = []
    for name, make in GENERATED.items():
        if env.get(name, "").strip():
            continue
        if not isinstance(kept.get(name), str) or not kept[name]:
            kept[name] = make()
            generated.append(name)
        env[name] = kept[name]
    if generated:
        write_private(path, json.dumps(kept, indent=2) + "\n")
    return generated


def secret_lines(env: Mapping[str, str], generated: list[str], from_file: Mapping[str, str],
                 exported: Mapping[str, str], kept_in: Path) -> list[str]:
    """The banner's lines about the secrets: a generated one shown once, every other one's true source."""
    lines = [f"  {name}={env[name]}  (generated now, kept in {kept_in})" for name in generated]
    sources: dict[str, list[str]] = {}
    for name in GENERATED:
        if name in generated:
            continue
        if name in from_file:
            source = f"from {from_file[name]}"
        elif exported.get(name, "").strip():
            source = "from the environment"
        else:
            source = f"kept from {kept_in}"
        sources.setdefault(source, []).append(name)
    return lines + [f"  {', '.join(names)}: {source}" for source, names in sources.items()]


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, in a folder only its owner can enter."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
