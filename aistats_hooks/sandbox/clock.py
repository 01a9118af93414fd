"""The sandbox clock: simulated time runs ``speed`` times faster than real time."""

from __future__ import annotations

import time


class SimClock:
    """Map real elapsed time onto simulated unix seconds."""

    def __init__(self, speed: float = 1.0, *, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = float(speed)
        # Simulated time starts at the real wall clock so timestamps look plausible.
        self.start = time.time() if start is None else float(start)
        self._origin = time.monotonic()

    def now(self) -> float:
        """Return the simulated unix time in seconds."""
        return self.start + (time.monotonic() - self._origin) * self.speed

    def resume(self, at: float) -> None:
        """Carry on from simulated time ``at`` (a restored sandbox: time stood still while it was down)."""
        self.start = float(at)
        self._origin = time.monotonic()

    def real_seconds(self, simulated: float) -> float:
        """Return how many real seconds ``simulated`` seconds take."""
        return max(0.0, simulated) / self.speed
