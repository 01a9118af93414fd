"""Your code on batch transitions: ``@on("batch.completed")`` registers a handler.

A module named in ``AISTATS_HANDLERS`` (comma-separated, importable) is
imported by the worker at start; in it::

    from aistats_hooks.handlers import on

    @on("batch.completed", "batch.failed")
    def archive(batch, ctx):
        ...

``batch`` is the reconciled record as ``GET /batches/<id>`` returns it;
``ctx`` (``HandlerContext``) carries the transition, a stable idempotency
key, the attempt number, a logger, and the batch's results. Each (batch,
transition, handler) runs once as its own RQ job, retried with backoff when
it raises, never on the acknowledgement path (see ``workers.handler_jobs``).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .rules.transitions import NAMES, Transition

Handler = Callable[[dict, "HandlerContext"], Any]


@dataclass(frozen=True)
class Registered:
    """One handler function and the transitions it runs on."""

    name: str  # "module.qualname": stable across processes, used in job ids and keys
    func: Handler
    transitions: tuple[str, ...]


_REGISTRY: dict[str, Registered] = {}


def on(*names: str) -> Callable[[Handler], Handler]:
    """Register the decorated function for these transitions (``batch.completed``, ...)."""
    unknown = [n for n in names if n not in NAMES]
    if not names or unknown:
        # Raised while the handler module is imported: the worker reports it in one line and exits 2.
        raise ValueError(f"@on({', '.join(map(repr, names))}): unknown transition "
                         f"{', '.join(map(repr, unknown)) or '(none given)'}; known: {', '.join(sorted(NAMES))}")

    def register(func: Handler) -> Handler:
        name = f"{func.__module__}.{func.__qualname__}"
        previous = _REGISTRY.get(name)
        merged = tuple(dict.fromkeys((previous.transitions if previous else ()) + names))
        _REGISTRY[name] = Registered(name, func, merged)
        return func

    return register


def registered() -> list[Registered]:
    """Return every registered handler, by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def for_transition(transition: str) -> list[Registered]:
    """Return the handlers that run on ``transition``, by name."""
    return [h for h in registered() if transition in h.transitions]


def get(name: str) -> Registered | None:
    """Return the handler registered under ``name``, or None."""
    return _REGISTRY.get(name)


def load(modules: Iterable[str]) -> list[Registered]:
    """Import the handler modules; raise ``ConfigError`` naming the one that failed."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any failure of a user's module is a setting to fix
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError("AISTATS_HANDLERS", f"cannot import {module!r}: {type(exc).__name__}: {detail}") from None
    return registered()


def idempotency_key(batch_id: str, transition: str, handler: str, change_id: str = "") -> str:
    """Return the key that is the same on every attempt of one (batch, transition, handler) run.

    ``change_id`` (the change-feed entry) tells two ``batch.progress`` of one batch apart.
    """
    digest = hashlib.sha256(f"{batch_id}\n{transition}\n{handler}\n{change_id}".encode()).hexdigest()[:32]
    return f"ah_{digest}"


@dataclass
class HandlerContext:
    """What a handler gets besides the batch."""

    batch_id: str
    transition: str
    handler: str
    change_id: str  # the change-feed entry this run is for
    attempt: int
    idempotency_key: str
    log: logging.Logger
    _results: Callable[[], Iterable[dict]] = field(repr=False, default=lambda: iter(()))
    _download: Callable[[str, str], int] = field(repr=False, default=lambda file_id, path: 0)

    def results(self) -> Iterable[dict]:
        """Return the batch's result rows (downloaded once per run, then read from the file)."""
        return self._results()

    def download(self, file_id: str, path: str) -> int:
        """Download one of the batch's files (output or error file) to ``path``; return bytes written."""
        return self._download(file_id, path)


__all__ = ["HandlerContext", "Registered", "Transition", "for_transition", "get", "idempotency_key", "load", "on",
           "registered"]
