"""Discovery from the gateway's batch list: reconcile batches we do not know or whose listed state differs.

A batch created from the user's own code whose deliveries all fail is never
known here otherwise. The real list returns at most 100 items ordered by
update time, ``has_more`` always false and no working cursor, so only its
first page is read, once per status group (``statuses=``): what changed
since the last poll is at the top. A poll therefore covers up to 100
changes per group between two polls; a batch whose listed status differs
from our record (or that we do not know) gets a reconcile job, which the
usual coalescing keeps to one. Final records are not revisited.
"""

from __future__ import annotations

from typing import Any

from .merge import is_final
from .sdk import AIStats
from .status import normalize_status
from .store import Store

# The gateway's status groups (its list filter expands each to provider statuses).
GROUPS = ("validating", "in_progress", "completed", "failed", "cancelled", "expired")
PAGE = 100  # the real list's largest page


def poll(store: Store, client: AIStats, *, groups: tuple[str, ...] = GROUPS) -> dict[str, int]:
    """Read each group's first page; queue a reconcile of every batch unknown or listed differently; count."""
    listed: dict[str, dict[str, Any]] = {}
    for group in groups:
        page = client.list_batches(statuses=group, limit=PAGE)
        for item in page.get("data") or []:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                listed.setdefault(item["id"], item)
    ids = list(listed)
    counts = {"listed": len(ids), "discovered": 0, "changed": 0, "queued": 0}
    for batch_id, record in zip(ids, store.get_many(ids) if ids else []):
        if record is None:
            counts["discovered"] += 1
        elif is_final(record) or _same(record, listed[batch_id]):
            continue
        else:
            counts["changed"] += 1
        counts["queued"] += store.request_reconcile(batch_id) == "queued"
    for name, value in counts.items():
        if value:
            store.incr("discovery", name, value)
    return counts


def _same(record: dict[str, Any], item: dict[str, Any]) -> bool:
    """True when the listed status is the one we hold (both normalized)."""
    return normalize_status(item.get("status")) == normalize_status(record.get("status"))
