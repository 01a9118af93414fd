"""The results table: printed once, and written with its context to bench/RESULTS.md."""

from __future__ import annotations

from pathlib import Path

from .context import Row

RESULTS = Path(__file__).with_name("RESULTS.md")


def _met(row: Row) -> str:
    return "" if row.met is None else ("met" if row.met else "NOT MET")


def table(rows: list[Row]) -> str:
    """Return the rows as a plain-text table."""
    head = ("section", "metric", "value", "target", "met")
    cells = [head] + [(r.section, r.metric, r.value, r.target, _met(r)) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(head))).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(machine: dict[str, str], rows: list[Row], notes: list[str], elapsed: float,
             causes: dict[str, str]) -> str:
    """Return RESULTS.md: context, the table, and the measured cause beside each unmet target."""
    out = ["# `make bench` results", ""]
    out += [f"- date: {machine['date']}", f"- machine: {machine['nproc']} CPUs ({machine['cpu']}), "
            f"{machine['memory']} RAM", f"- python: {machine['python']}", f"- code: {machine['git']}",
            f"- whole run: {elapsed / 60:.1f} min", ""]
    out += [f"- {n}" for n in notes]
    out += ["", "| section | metric | value | target | met | notes |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        out.append(f"| {r.section} | {_md(r.metric)} | {_md(r.value)} | {_md(r.target)} | {_met(r)} | {_md(r.note)} |")
    unmet = [r for r in rows if r.met is False]
    if unmet:
        out += ["", "## Unmet targets: gap and measured cause", ""]
        for r in unmet:
            cause = next((text for key, text in causes.items() if key in f"{r.section}: {r.metric}"), "")
            out.append(f"- **{r.section}: {r.metric}**: {r.value} against {r.target}. {cause}".rstrip())
    return "\n".join(out) + "\n"


def write(text: str) -> Path:
    """Write RESULTS.md and return its path."""
    RESULTS.write_text(text)
    return RESULTS
