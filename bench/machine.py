"""What the numbers were measured on, and how busy the machine was meanwhile."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def describe() -> dict[str, str]:
    """Return date, nproc, CPU model, memory, Python and the code's git state."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                      if ln.startswith("MemTotal"))
        memory = f"{mem_kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        memory = "unknown"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "memory": memory,
        "python": platform.python_version(),
        "git": _git(),
    }


def _git() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "aistats_hooks", "workers",
                                "app.py"], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = [ln[3:] for ln in dirty if ln.strip()]
    return head + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")


def _busy_jiffies() -> int:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle


def _tree_jiffies(root: int) -> int:
    """CPU of ``root`` and every descendant (live ones, plus reaped children of each)."""
    parents: dict[int, int] = {}
    usage: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        parents[pid] = int(stat[1])
        usage[pid] = sum(int(x) for x in stat[11:15])  # utime stime cutime cstime
    total = 0
    for pid in usage:
        p = pid
        while p > 1 and p != root:
            p = parents.get(p, 0)
        if p == root:
            total += usage[pid]
    return total


def tree_cpu_seconds(root: int) -> float:
    """Return the CPU seconds used so far by ``root`` and its descendants."""
    return _tree_jiffies(root) / os.sysconf("SC_CLK_TCK")


class LoadWatch:
    """CPU the rest of the machine used while the bench ran (other people's tests...)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.busy = _busy_jiffies()
        self.ours = _tree_jiffies(os.getpid())

    def foreign_cores(self) -> float:
        """Return the average cores busy outside this bench's process tree since start."""
        hz = os.sysconf("SC_CLK_TCK")
        seconds = max(time.monotonic() - self.started, 1e-6)
        foreign = (_busy_jiffies() - self.busy) - (_tree_jiffies(os.getpid()) - self.ours)
        return max(0.0, foreign / hz / seconds)
