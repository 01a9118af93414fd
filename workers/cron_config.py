"""The polling fallback: ``rq cron -c workers.settings workers/cron_config.py``.

RQ's ``CronScheduler`` loads this file and enqueues, on the reconcile queue
(a ``rq worker`` runs them):

- ``workers.discovery_job.discover`` every second: it polls the gateway's
  list only when a view is due (aistats_hooks/discovery.py decides: every
  few seconds while batches end fast, once per AISTATS_DISCOVERY_INTERVAL
  when quiet), so most ticks cost one Redis read and no gateway call;
- ``workers.jobs.sweep`` every ``AISTATS_SWEEP_INTERVAL`` seconds (default
  30): the backstop, re-reconciling open batches not reconciled for
  ``AISTATS_STALE_AFTER``, at most ``AISTATS_SWEEP_MAX_PER_HOUR`` an hour.

Importing ``workers.settings`` validates every setting first (one line,
exit 2). Running two cron processes is harmless: discovery polls under a
lock, the sweep's allowance is shared, and reconciles of a batch coalesce.
"""

from __future__ import annotations

from rq.cron import register

from workers.alert_jobs import tick as alert_tick
from workers.discovery_job import discover
from workers.jobs import sweep
from workers.settings import QUEUES, SETTINGS, SWEEP_INTERVAL

# Each only queues jobs; a stuck one must not outlive the next ticks by much. A discover tick's
# result is not kept (86,400 a day); a failed one stays in the failed registry for a day.
TICKS = [(sweep, "sweep", SWEEP_INTERVAL, 600), (discover, "discover", 1, 0)]
if SETTINGS.alert_urls:  # AISTATS_ALERT_URLS: failed work, stalled polling and spend are looked at every 30 s
    TICKS.append((alert_tick, "alerts", 30, 0))
for job, name, interval, result_ttl in TICKS:
    register(
        job,
        queue_name=QUEUES[0],
        interval=interval,
        job_timeout=max(interval, 60),
        result_ttl=result_ttl,
        failure_ttl=86400,
        name=f"{SETTINGS.key_prefix}:{name}",
    )
