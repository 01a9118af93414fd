"""Thread-safe counters behind GET /_sandbox/stats."""

from __future__ import annotations

import copy
import threading
from typing import Any


def _fresh() -> dict[str, Any]:
    """Return the zeroed counter tree."""
    return {
        "retrieve_calls": {"total": 0, "by_batch": {}},
        "list_calls": 0,
        "deliveries": {
            "attempted": 0,
            "succeeded": 0,
            "failed": 0,
            "permanently_failed": 0,
            "by_status": {},
            "by_kind": {},
            "worker_errors": 0,
        },
        "events_generated": {"total": 0, "by_type": {}},
        "faults_assigned": {},
        "faults_injected": {},
    }


class Stats:
    """Nested counters, incremented by path from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tree = _fresh()

    def incr(self, *path: str, n: int = 1) -> None:
        """Add ``n`` to the counter at ``path``, creating it at zero."""
        with self._lock:
            node = self._tree
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = node.get(path[-1], 0) + n

    def get(self, *path: str) -> int:
        """Return the counter at ``path`` (zero when never incremented)."""
        with self._lock:
            node: Any = self._tree
            for key in path:
                if not isinstance(node, dict) or key not in node:
                    return 0
                node = node[key]
            return node

    def snapshot(self) -> dict[str, Any]:
        """Return a deep copy of every counter."""
        with self._lock:
            return copy.deepcopy(self._tree)

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self._tree = _fresh()
