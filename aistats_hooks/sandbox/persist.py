"""The sandbox's state on disk, so a restarted ``make run`` finds the batches it made.

``make run`` passes ``--state-file .data/sandbox-state.pickle``: the server
writes the gateway's batches, files, endpoints, pending wake-ups and the
simulated time there every few seconds and on shutdown, and reads it back at
start. The simulated clock resumes where it stopped (time stands still while
the sandbox is down), so an unfinished batch carries on with its plan.

The file is the sandbox's own (0600, written whole then renamed, so a crash
leaves the previous copy); a file from another version, or unreadable, is
set aside as ``*.bad`` and the sandbox starts empty, saying so.
"""

from __future__ import annotations

import itertools
import os
import pickle
import sys
from pathlib import Path
from typing import Any

# Bump when the pickled classes change shape: an old file is then set aside, not misread.
STATE_VERSION = 1


def snapshot(gateway: Any) -> dict[str, Any]:
    """Return the gateway's state, taken under its lock."""
    with gateway._lock:
        seq, created = next(gateway._seq), next(gateway._created)
        gateway._seq, gateway._created = itertools.count(seq), itertools.count(created)
        with gateway.endpoints._lock:
            endpoints = dict(gateway.endpoints._by_id)
        return {"version": STATE_VERSION, "sim_now": gateway.clock.now(), "batches": dict(gateway._batches),
                "files": dict(gateway._files), "due": list(gateway._due), "seq": seq, "created": created,
                "endpoints": endpoints}


def save(gateway: Any, path: Path) -> None:
    """Write the gateway's state to ``path`` atomically, readable by its owner only."""
    data = pickle.dumps(snapshot(gateway), protocol=pickle.HIGHEST_PROTOCOL)
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def load(gateway: Any, path: Path) -> int:
    """Restore the gateway from ``path`` if it holds a state; return how many batches came back."""
    try:
        state = pickle.loads(path.read_bytes())  # our own 0600 file, written by save()
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"not a version-{STATE_VERSION} sandbox state")
    except FileNotFoundError:
        return 0
    except Exception as exc:  # noqa: BLE001 - any unreadable file: keep it aside, start empty
        os.replace(path, path.with_name(path.name + ".bad"))
        print(f"sandbox: could not read {path} ({type(exc).__name__}: {exc}); kept it as *.bad, starting empty",
              file=sys.stderr, flush=True)
        return 0
    with gateway._lock:
        gateway.clock.resume(state["sim_now"])
        gateway._batches, gateway._files, gateway._due = state["batches"], state["files"], state["due"]
        gateway._seq, gateway._created = itertools.count(state["seq"]), itertools.count(state["created"])
        with gateway.endpoints._lock:
            gateway.endpoints._by_id = state["endpoints"]
    return len(state["batches"])
