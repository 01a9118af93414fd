"""What a reconciled batch is: its statuses, where its state came from, how upstream values fold.

The gateway speaks several status vocabularies (retrieve's OpenAI-style
``validating``/``finalizing``/``cancelling``, the webhook payload's folded
public status, ``lifecycle_status``); this module maps all of them onto
``BatchStatus``. No I/O.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class BatchStatus(str, Enum):
    """The statuses a reconciled batch can have."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    NOT_FOUND = "not_found"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def rank(self) -> int:
        """Order for "never moves back": not_found < pending < in_progress < terminal."""
        return _RANK.get(self, 2)


class Source(str, Enum):
    """Where the state of a record came from."""

    RETRIEVE = "retrieve"
    WEBHOOK_PAYLOAD = "webhook_payload"
    TRACKED = "tracked"


TERMINAL = frozenset({BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.CANCELLED, BatchStatus.EXPIRED})
_RANK = {BatchStatus.NOT_FOUND: -1, BatchStatus.PENDING: 0, BatchStatus.IN_PROGRESS: 1}

# Provider-style and gateway lifecycle values, folded onto our statuses. Unlike
# the gateway's public mapping we keep `expired` apart from `failed`: both are
# terminal, but users ask which one happened (retrieve keeps `expired` even
# though the webhook for it is `batch.failed`).
_STATUS_MAP = {
    "completed": BatchStatus.COMPLETED,
    "succeeded": BatchStatus.COMPLETED,
    "failed": BatchStatus.FAILED,
    "expired": BatchStatus.EXPIRED,
    "cancelled": BatchStatus.CANCELLED,
    "canceled": BatchStatus.CANCELLED,
    "in_progress": BatchStatus.IN_PROGRESS,
    "processing": BatchStatus.IN_PROGRESS,
    "running": BatchStatus.IN_PROGRESS,
    "finalizing": BatchStatus.IN_PROGRESS,
    "cancelling": BatchStatus.IN_PROGRESS,
}


def normalize_status(raw: Any, lifecycle: Any = None) -> BatchStatus:
    """Map an upstream status (or, when it is missing, the lifecycle status) onto a ``BatchStatus``."""
    for value in (raw, lifecycle):
        if isinstance(value, str) and value.strip():
            return _STATUS_MAP.get(value.strip().lower(), BatchStatus.PENDING)
    return BatchStatus.PENDING
