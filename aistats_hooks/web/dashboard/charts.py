"""Charts drawn on the server as inline SVG: no script, no library, no network.

Colours and sizes are SVG presentation attributes or classes from the
dashboard's stylesheet, never ``style=""`` (the Content-Security-Policy
allows no inline style). Every text is escaped; every mark carries a
``<title>`` so a pointer or a screen reader can read its value.
"""

from __future__ import annotations

import math

from markupsafe import Markup, escape

from ...rules.billing import nanos_to_usd


def whole(value) -> int | None:
    """A stored number as an int, or None for anything that is not one (None, Jinja's Undefined, text, NaN)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(str(value))
    except (TypeError, ValueError):
        return None
    return int(number) if number == number and abs(number) != float("inf") else None


def usd(nanos: int) -> str:
    """Format nanos as dollars for people: cents above a dollar, more digits below one."""
    dollars = nanos / 1_000_000_000
    if nanos == 0:
        return "$0"
    if abs(dollars) >= 1:
        return f"${dollars:,.2f}"
    if abs(dollars) >= 0.01:
        return f"${dollars:.4f}"
    return f"${nanos_to_usd(nanos).rstrip('0')}"


def axis_usd(nanos: int) -> str:
    """A short dollar label for an axis: three significant digits at most, never cut to nothing."""
    dollars = nanos / 1_000_000_000
    if nanos == 0:
        return "$0"
    if abs(dollars) >= 1:
        return f"${dollars:,.0f}" if abs(dollars) >= 100 else f"${dollars:,.2f}"
    digits = min(2 - math.floor(math.log10(abs(dollars))), 9)
    return f"${dollars:.{digits}f}"


def spend_per_day(days: list[dict], *, width: int = 720, height: int = 220) -> Markup:
    """Return a bar chart of spend per day: one ``<rect class="bar">`` per day that has spend."""
    peak = max((d["total_nanos"] for d in days), default=0)
    labels = [axis_usd(int(peak * frac)) for frac in (0, 0.5, 1)]
    # Room for the longest value label (about 7 units per character at the axis font), so none is clipped.
    left, right, top, bottom = max(56, 7 * max(len(t) for t in labels) + 12), 8, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(len(days), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="spend-chart-title" preserveAspectRatio="xMidYMid meet">',
        '<title id="spend-chart-title">Spend per day, last %d days</title>' % len(days),
    ]
    for frac, label in zip((0, 0.5, 1), labels):  # grid lines with their values
        y = top + plot_h - frac * plot_h
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>')
    for i, day in enumerate(days):
        x = left + i * step
        nanos = day["total_nanos"]
        if nanos > 0:
            h = max(plot_h * nanos / peak, 1.5)
            parts.append(
                f'<rect class="bar" data-day="{escape(day["day"])}" data-nanos="{nanos}" x="{x + step * 0.15:.1f}" '
                f'y="{top + plot_h - h:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" rx="2">'
                f'<title>{escape(day["day"])}: {escape(usd(nanos))}</title></rect>')
        last = len(days) - 1
        # About ten date labels whatever the range, and one on the last day unless another sits too close.
        every = max(1, -(-len(days) // 10))
        if (i % every == 0 and last - i >= max(1, every // 2)) or i == last:
            parts.append(f'<text class="axis" x="{x + step / 2:.1f}" y="{height - 8}" text-anchor="middle">'
                         f'{escape(day["day"][5:])}</text>')
    parts.append(f'<line class="baseline" x1="{left}" x2="{width - right}" y1="{top + plot_h}" '
                 f'y2="{top + plot_h}"/></svg>')
    return Markup("".join(parts))


def share_bar(value: int, peak: int, *, label: str, width: int = 160, height: int = 12) -> Markup:
    """Return a small horizontal bar of ``value`` out of ``peak`` (for a table cell)."""
    filled = 0 if peak <= 0 else max(width * value / peak, 1 if value else 0)
    return Markup(
        f'<svg class="share" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(label)}"><rect class="track" width="{width}" height="{height}" rx="3"/>'
        f'<rect class="fill" width="{filled:.1f}" height="{height}" rx="3"/></svg>')


def progress(counts: dict | None, *, width: int = 480, height: int = 18) -> Markup:
    """Return a progress bar of a batch's request counts: completed, failed, and what remains."""
    counts = counts if isinstance(counts, dict) else {}
    total, done, failed = (max(whole(counts.get(k)) or 0, 0) for k in ("total", "completed", "failed"))
    label = f"{done} completed, {failed} failed of {total} requests"
    parts = [f'<svg class="progress" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">',
             f'<rect class="track" width="{width}" height="{height}" rx="4"/>']
    if total:
        w_done = width * min(done, total) / total
        w_failed = width * min(failed, total - min(done, total)) / total
        parts.append(f'<rect class="done" width="{w_done:.1f}" height="{height}" rx="4"/>')
        if w_failed:
            parts.append(f'<rect class="failed" x="{w_done:.1f}" width="{w_failed:.1f}" height="{height}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
