"""RQ settings module: ``rq worker -c workers.settings`` and ``rq cron -c workers.settings``.

RQ imports this module by name and reads its UPPERCASE names. Importing it
validates every setting first: a missing or malformed one prints one line
naming the variable and exits with status 2, before RQ starts anything.

- ``REDIS_URL``: the service's Redis (the embedded one under ``.data/``
  when ``REDIS_URL`` is unset, as every process of aistats-hooks does);
- ``SENTINEL``: instead of ``REDIS_URL`` when ``REDIS_SENTINELS`` is set
  (RQ's Sentinel setting; see ``aistats_hooks/redis_sentinel.py``);
- ``QUEUES``: the reconcile queue (``AISTATS_QUEUE``, default the key prefix,
  default ``aistats``), then its ``-handlers``, ``-forward`` and ``-archive``
  queues, in that priority order; ``AISTATS_WORKER_QUEUES`` picks some of them,
  so a deployment can give side effects their own workers;
- ``DICT_CONFIG``: JSON log lines with secrets redacted (``LOG_LEVEL``), one
  INFO line per job, transient gateway errors at WARNING without a traceback;
- ``SWEEP_INTERVAL``: seconds between sweeps (``AISTATS_SWEEP_INTERVAL``,
  5 to 3600, default 30), read by ``workers/cron_config.py``.

A worker without ``AISTATS_API_KEY`` could only fail every job, so it is
refused at start too.
"""

from __future__ import annotations

import contextlib
import logging
import logging.config

from redis.exceptions import RedisError

from aistats_hooks import handlers, job_queues, logs, redis_conn, tracing
from aistats_hooks.config import Settings, exit_config_error
from aistats_hooks.errors import ConfigError
from workers.log_filter import OneLinePerJob, QuietTicks


def _load() -> tuple[Settings, str, int]:
    # Everything is checked here, before RQ configures logging or connects:
    # a bad setting is the only line the process prints.
    try:
        settings = Settings.from_env()
        settings.require_api_key()
        tracing.configure("aistats-hooks-worker")  # off unless OTEL_TRACES_EXPORTER names an exporter
        handlers.load(settings.handler_modules)  # an import error is a setting to fix: one line, exit 2
        return settings, logs.level_from_env(), settings.sweep_interval
    except ConfigError as exc:
        exit_config_error(exc)


SETTINGS, LOG_LEVEL, SWEEP_INTERVAL = _load()

if SETTINGS.redis_sentinels:
    # RQ's own Sentinel support: it builds Sentinel(...).master_for(MASTER_NAME), which
    # follows a failover; REDIS_URL must then stay undefined here (RQ would prefer it).
    from aistats_hooks.redis_sentinel import rq_sentinel

    SENTINEL = rq_sentinel(SETTINGS)
elif SETTINGS.redis_url:
    REDIS_URL = SETTINGS.redis_url
else:  # pragma: no cover - the launcher and PaaS set REDIS_URL
    from aistats_hooks.redis_conn import start_embedded

    REDIS_URL = start_embedded(SETTINGS.data_dir)

# Reconciles first, then handlers, forwarding, the archive (aistats_hooks/job_queues.py); AISTATS_WORKER_QUEUES
# gives a worker only some of them, so a deployment can give side effects their own workers.
QUEUES = job_queues.names(SETTINGS.queue_name, SETTINGS.worker_queues)
DICT_CONFIG = logs.dict_config(LOG_LEVEL, logs.secrets_of(SETTINGS))
# One INFO line per job, transient gateway errors as one WARNING line (see workers/log_filter.py):
# on RQ's worker logger itself, so it holds whatever handlers the process ends up with.
logging.getLogger("rq.worker").addFilter(OneLinePerJob())
logging.getLogger("rq.cron").addFilter(QuietTicks())

# An evicting or non-persistent Redis loses acknowledged work: say so once, as a JSON line, at start.
logging.config.dictConfig(DICT_CONFIG)
_redis = redis_conn.connect(SETTINGS)
redis_conn.warn_if_lossy(_redis)
if handlers.registered():
    # Handlers see every transition stored from this start on (a CLI-tracked batch's first too).
    from aistats_hooks.effects.dispatch import ensure_group
    from aistats_hooks.keys import Keys

    with contextlib.suppress(RedisError):  # the first reconcile creates it then
        ensure_group(_redis, Keys(SETTINGS.key_prefix))
