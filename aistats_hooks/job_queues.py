"""The service's RQ queues: reconciles on ``<queue>``, each side effect on a queue of its own.

A handler that hangs, a forwarding destination that drips or an archive
that copies a large file must never hold a batch's reconcile back: each
kind of work has its own queue (``<queue>-handlers``, ``<queue>-forward``,
``<queue>-archive``), so a deployment can give each its own workers
(``AISTATS_WORKER_QUEUES`` picks a worker's roles), and a worker serving
several takes them in ``ROLES`` order: reconciles first. Callers keep
passing the reconcile queue (``Store.queue``); the side queues are derived
from its name, so failed jobs and requeues span the whole family.
"""

from __future__ import annotations

from collections.abc import Mapping

from rq import Queue

from .errors import ConfigError

# In priority order: a worker serving several queues takes a reconcile before any side effect.
ROLES = ("reconcile", "handlers", "forward", "archive")


def name(base: str, role: str) -> str:
    """The name of ``role``'s queue, for the reconcile queue ``base``."""
    if role not in ROLES:
        raise ValueError(f"unknown queue role {role!r}")
    return base if role == "reconcile" else f"{base}-{role}"


def names(base: str, roles: tuple[str, ...] = ROLES) -> list[str]:
    """The queues of ``roles`` (in priority order whatever order they are given in)."""
    return [name(base, r) for r in ROLES if r in roles]


def of(queue: Queue, role: str) -> Queue:
    """``role``'s queue beside the reconcile queue ``queue`` (same connection and serializer)."""
    if role == "reconcile":
        return queue
    return Queue(name(queue.name, role), connection=queue.connection, serializer=queue.serializer)


def family(queue: Queue) -> list[Queue]:
    """The reconcile queue and every side queue, in priority order."""
    return [of(queue, role) for role in ROLES]


def roles_from_env(env: Mapping[str, str]) -> dict:
    """``AISTATS_WORKER_QUEUES``: the roles a worker serves (comma-separated; default all, in priority order)."""
    raw = env.get("AISTATS_WORKER_QUEUES", "").strip()
    roles = tuple(dict.fromkeys(r.strip().lower() for r in raw.split(",") if r.strip())) or ROLES
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ConfigError("AISTATS_WORKER_QUEUES", f"unknown queue {unknown[0]!r}; expected some of "
                                                   f"{', '.join(ROLES)}")
    return {"worker_queues": tuple(r for r in ROLES if r in roles)}
