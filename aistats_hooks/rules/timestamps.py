"""The two time forms the gateway uses (ISO-8601 strings, unix seconds or ms), read as one.

Records store ISO-8601 UTC with milliseconds; comparisons use unix seconds.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

# The moments we accept: from the epoch to the end of year 9999 (what datetime
# can print). Anything else (1e20, Infinity, NaN, negative) reads as missing.
MAX_SECONDS = 253402300799.0


def parse_time(value: Any) -> float | None:
    """Return unix seconds from an ISO-8601 string or unix seconds/milliseconds; None if unreadable or absurd."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond any float
            return None
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        # isascii: '²'.isdigit() is true but float('²') raises.
        if text.isascii() and text.replace(".", "", 1).isdigit():
            seconds = float(text)
        else:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00")[:64])
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=timezone.utc)
                return _bounded(parsed.timestamp())
            except (ValueError, OverflowError, OSError):
                return None
    else:
        return None
    if not math.isfinite(seconds):
        return None
    return _bounded(seconds / 1000.0 if seconds >= 1e12 else seconds)


def _bounded(seconds: float) -> float | None:
    return seconds if 0.0 <= seconds <= MAX_SECONDS else None


def iso(seconds: float | None) -> str | None:
    """Format unix seconds as ISO-8601 UTC with milliseconds."""
    if seconds is None or not math.isfinite(seconds) or not 0.0 <= seconds <= MAX_SECONDS:
        return None
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def utc_day(seconds: float) -> str:
    """Return the UTC day (YYYY-MM-DD) of unix seconds."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d")
