"""The polling fallback: ``rq cron -c workers.settings workers/cron_config.py``.

RQ's ``CronScheduler`` loads this file and enqueues ``workers.jobs.sweep`` on
the reconcile queue every ``AISTATS_SWEEP_INTERVAL`` seconds (default 30); a
``rq worker`` runs it. The sweep queues a reconcile of every open batch not
reconciled for ``AISTATS_STALE_AFTER`` seconds: batches whose webhooks were
lost, and batches created through the CLI that never got one.

Importing ``workers.settings`` validates every setting first (one line,
exit 2). Running two cron processes is harmless: reconciles of a batch
coalesce into one queued job.
"""

from __future__ import annotations

from rq.cron import register

from workers.discovery_job import discover
from workers.jobs import sweep
from workers.settings import QUEUES, SETTINGS, SWEEP_INTERVAL

# The sweep, and discovery (the gateway list's first page per status group, 6 calls a tick: batches we
# never heard of, and batches whose listed status moved, get a reconcile), on the same interval. Each
# only queues jobs; a stuck one must not outlive the next tick by much.
for job, name in ((sweep, "sweep"), (discover, "discover")):
    register(
        job,
        queue_name=QUEUES[0],
        interval=SWEEP_INTERVAL,
        job_timeout=max(SWEEP_INTERVAL, 60),
        result_ttl=600,
        failure_ttl=86400,
        name=f"{SETTINGS.key_prefix}:{name}",
    )
