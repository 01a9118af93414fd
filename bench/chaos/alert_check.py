"""The chaos run's alert check: a forced dead letter gives exactly one alert, then one resolve.

The run's processes send alerts (``AISTATS_ALERT_URLS``) to a local receiver that
verifies each with the ``standardwebhooks`` package. After the faults, the harness
enqueues one job that fails every try; the cron's alert tick (every 30 s) must send
one ``dead_letter`` alert for it; once the failed job is deleted, one ``resolved``.
Dead letters the faults themselves caused alert too; only the forced one is counted.
"""

from __future__ import annotations

import os
import time

from rq import Queue

from ..forward_destination import Destination

FUNC = "bench.chaos.alert_check.fail_for_good"


def fail_for_good() -> None:
    """The forced dead letter: a job that fails on its only try."""
    raise RuntimeError("chaos: a job that fails for good, on purpose")


class Alerts:
    """The alert receiver, and the check."""

    def __init__(self, stack) -> None:
        self.stack = stack
        self.secret = "whsec_" + os.urandom(24).hex()
        self.destination = Destination(self.secret)
        stack.alert_env = {"AISTATS_ALERT_URLS": self.destination.url, "AISTATS_ALERT_SECRET": self.secret}

    def _messages(self) -> list[dict]:
        subject = f"{self.stack.prefix}:{FUNC}"
        return [r["payload"] for r in self.destination.delivered()
                if r["verified"] and r["payload"].get("kind") == "dead_letter" and r["payload"].get("subject") == subject]

    def _wait(self, status: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(m.get("status") == status for m in self._messages()):
                return True
            time.sleep(1)
        return False

    def check(self, *, timeout: float = 120.0) -> dict:
        """Force one dead letter, wait for its alert, clear it, wait for the resolve; count what came."""
        queue = Queue(self.stack.prefix, connection=self.stack.redis())
        job = queue.enqueue(FUNC, job_id=f"{self.stack.prefix}-chaos-dead-letter", description="chaos: fails for good")
        fired = self._wait("firing", timeout)
        if fired:
            queue.failed_job_registry.remove(job, delete_job=True)
        resolved = fired and self._wait("resolved", timeout)
        time.sleep(2)  # a duplicate would come with the same tick
        messages = self._messages()
        return {"alert_firing": sum(m.get("status") == "firing" for m in messages),
                "alert_resolved": sum(m.get("status") == "resolved" for m in messages),
                "alert_unverified": sum(not r["verified"] for r in self.destination.requests),
                "alert_waited_ok": bool(fired and resolved)}

    def stop(self) -> None:
        self.destination.stop()
