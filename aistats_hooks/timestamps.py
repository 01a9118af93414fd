"""The two time forms the gateway uses (ISO-8601 strings, unix seconds or ms), read as one.

Records store ISO-8601 UTC with milliseconds; comparisons use unix seconds.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def parse_time(value: Any) -> float | None:
    """Return unix seconds from an ISO-8601 string or unix seconds/milliseconds; None if unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        # isascii: '²'.isdigit() is true but float('²') raises.
        if text.isascii() and text.replace(".", "", 1).isdigit():
            seconds = float(text)
        else:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            return parsed.timestamp()
    else:
        return None
    return seconds / 1000.0 if seconds >= 1e12 else seconds


def iso(seconds: float | None) -> str | None:
    """Format unix seconds as ISO-8601 UTC with milliseconds."""
    if seconds is None:
        return None
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def utc_day(seconds: float) -> str:
    """Return the UTC day (YYYY-MM-DD) of unix seconds."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d")
