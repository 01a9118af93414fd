"""When a 404 from the gateway is believed: misses spread over time, not counted per run.

Pure, no I/O. A batch just created can be briefly unknown to a replica, and
deliveries or listings can make a worker retrieve it many times in a few
seconds: counting each of those 404s would believe the gateway after a burst.
So a miss counts only once the previous counted one is ``SPACING`` old:
the first at once, the second at least 60 s later, the third at least 240 s
after that, so a batch becomes ``not_found`` only after three misses spread
over at least five minutes, however many runs see a 404 meanwhile. A miss
that does not count changes nothing but tells when the next check is due.

The record keeps ``not_found_misses`` (counted misses) and
``not_found_checked_at`` (unix seconds of the last counted one); a retrieve
that finds the batch drops both (``merge`` and ``reconcile``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Seconds from one counted miss to the next that can count. A constant on purpose (not an operator
# setting): tests pass their own ``spacing`` to ``count_miss``. workers.jobs.NOT_FOUND_DELAYS waits these.
SPACING: tuple[float, ...] = (60.0, 240.0)
MISSES = "not_found_misses"
CHECKED_AT = "not_found_checked_at"


@dataclass(frozen=True)
class Miss:
    """The verdict on one 404."""

    misses: int  # counted misses after this one
    checked_at: float  # when the last counted one was seen (unix seconds)
    counted: bool  # this 404 was counted
    believed: bool  # enough misses, spread enough: the batch is not_found
    retry_in: float  # seconds until the next miss can count (0 when believed)


def count_miss(misses: object, checked_at: object, now: float, spacing: tuple[float, ...] = SPACING) -> Miss:
    """Return what a 404 seen at ``now`` means, given the record's counted misses and when the last was seen."""
    count = misses if isinstance(misses, int) and not isinstance(misses, bool) and misses > 0 else 0
    last = float(checked_at) if isinstance(checked_at, (int, float)) and math.isfinite(checked_at) else None
    if count == 0 or last is None or last > now + max(spacing, default=0):
        # No evidence yet (or none we can date, or dated absurdly far ahead): this is the first miss.
        return _after(1, now, spacing)
    needed = spacing[min(count, len(spacing)) - 1] if spacing else 0.0
    if count > len(spacing) or now - last >= needed:
        return _after(count + 1, now, spacing)
    # Too soon after the last counted miss: evidence of nothing new.
    return Miss(count, last, counted=False, believed=False, retry_in=max(last + needed - now, 0.0))


def _after(count: int, now: float, spacing: tuple[float, ...]) -> Miss:
    if count > len(spacing):
        return Miss(count, now, counted=True, believed=True, retry_in=0.0)
    return Miss(count, now, counted=True, believed=False, retry_in=spacing[count - 1])


def attempts(spacing: tuple[float, ...] = SPACING) -> int:
    """How many counted misses make a batch not_found."""
    return len(spacing) + 1
