"""Slow clients during the chaos run: connections that drip header bytes, stall mid-body or idle.

They go straight to gunicorn (not through the tap proxy), as an attacker on the
internet would, for the whole load window. The run's figures (lost events,
double billing, batches unequal to the truth) must stay at zero beside them:
the web process reads every request in its event loop, so they hold no thread.
"""

from __future__ import annotations

from ..slowclients import Dripper

MODES = ("headers", "headers", "body", "idle")


class SlowClients:
    """A ``Dripper`` of ``count`` connections against the stack's web port, for at most ``seconds``."""

    def __init__(self, stack, record, count: int = 200, seconds: float = 600.0) -> None:
        self.record = record
        self.dripper = Dripper(stack.web_port, count, MODES, interval=1.0, seconds=seconds)

    def start(self) -> SlowClients:
        self.dripper.start()
        self.record.note(f"slow clients: {self.dripper.count} connections to gunicorn (dripping headers, "
                         "stalled bodies, idle)")
        return self

    def stop(self) -> None:
        if self.dripper._stop.is_set():  # once: the run's end and its clean-up both call it
            return
        self.dripper.stop()
        self.record.note(f"slow clients stopped: {self.dripper.opened} opened, "
                         f"{self.dripper.closed_by_server} closed by the server's deadlines and reopened")
