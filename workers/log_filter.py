"""RQ's worker log, one line per job: ``rq worker`` says four things at INFO about every job.

Kept at INFO: "Successfully completed job ... in ...s" (one line per job).
Dropped: the dequeue line, "Job OK" and "result is kept" (the same job again),
and every INFO line of the discover tick, which runs every second and says
itself when it queued something (aistats_hooks.discovery). ``QuietTicks``
drops the cron's own "Enqueued job discover" line, every second, likewise.
A job that raised a transient gateway error (``RateLimitError``,
``UpstreamUnavailable``: RQ retries it) is logged at WARNING as one line,
without the traceback. A refused API key (401/403: ``AuthenticationError``)
is one ERROR line saying what to do, without the traceback: it is not a bug,
and every job fails the same way until a person fixes the key. Any other
exception keeps RQ's ERROR and traceback, because that one is a bug or a
failure that needs a person.
"""

from __future__ import annotations

import logging

from aistats_hooks import dead_letters
from aistats_hooks.errors import AIStatsError

_TRANSIENT = tuple(sorted(cls.__name__ for cls in (*AIStatsError.__subclasses__(),
                                                    *[s for c in AIStatsError.__subclasses__()
                                                      for s in c.__subclasses__()])
                          if getattr(cls, "retryable", False)))
_DROPPED = ("Job OK", "result is kept", "result discarded", "workers.discovery_job.discover(")


class OneLinePerJob(logging.Filter):
    """Filter (and reshape) the ``rq.worker`` records as the module says."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("rq.worker") or record.levelno > logging.ERROR:
            return True
        if record.levelno == logging.INFO:
            return _keep_info(record)
        if record.levelno == logging.ERROR and "exception raised while executing" in str(record.msg):
            _soften_transient(record)
        return True


def _keep_info(record: logging.LogRecord) -> bool:
    """Keep one INFO line per job: the completion; drop the others about the same job."""
    text = record.getMessage()
    if any(marker in text for marker in _DROPPED):
        return False
    # The dequeue line: 'Worker %s: %s: %s' (queue, job id), or with the description.
    return not (str(record.msg).startswith("Worker %s: %s: %s") and "job" not in str(record.msg).lower())


def _soften_transient(record: logging.LogRecord) -> None:
    """A retried gateway error: WARNING, the exception's last line only."""
    args = record.args if isinstance(record.args, tuple) else ()
    if len(args) != 4:
        return
    worker, job_id, func, exc_string = args
    last = str(exc_string).strip().splitlines()[-1] if str(exc_string).strip() else ""
    if dead_letters.kind_of(last) == "key_refused":
        record.msg, record.args = "job %s (%s): %s; %s", (job_id, func, last, dead_letters.NEXT_STEPS["key_refused"])
        record.exc_info = record.exc_text = None
        return
    if last.split(":", 1)[0].rsplit(".", 1)[-1] not in _TRANSIENT:
        return
    record.levelno, record.levelname = logging.WARNING, "WARNING"
    record.msg, record.args = "job %s (%s): transient gateway error, RQ retries it: %s", (job_id, func, last)
    record.exc_info = record.exc_text = None


class QuietTicks(logging.Filter):
    """On ``rq.cron``: drop the INFO line of each discover tick (the sweep's stays)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and "job discover " in record.getMessage())
