"""The RQ job that archives one ended batch's files (``aistats_hooks.effects.archive``), on the archive queue.

Enqueued by ``aistats_hooks.effects.archiving`` (a terminal transition on the change
feed, or the CLI's ``archive``). The gateway's file is downloaded through the
SDK's ``download_file`` (to a temporary file: bounded memory whatever its
size), then copied to the archive while it is hashed. Any failure raises, and
RQ retries with ``archiving.BACKOFF``; the state says ``failed`` with the
reason until a try succeeds.
"""

from __future__ import annotations

import logging

from aistats_hooks import tracing

from aistats_hooks.effects import archiving
from aistats_hooks.effects.archive import Archive, archive_batch as write_archive, wanted_files

from . import context

log = logging.getLogger("workers.archive")


@tracing.traced_job("archive")
def archive_batch(batch_id: str) -> str:
    """Archive ``batch_id``'s output and error files once; return what happened."""
    ctx = context.current()
    redis, keys, settings = ctx.store.redis, ctx.store.keys, ctx.settings
    record = ctx.store.get(batch_id)
    if not settings.archive_url:
        return "archive_off"
    if record is None or not wanted_files(record):
        archiving.write_state(redis, keys, settings, batch_id, status="nothing", files={}, url=None)
        return "nothing"
    archive = Archive(settings.archive_url, endpoint_url=settings.archive_endpoint_url)
    archiving.write_state(redis, keys, settings, batch_id, status="archiving", url=archive.public_url(
        archive.folder(record)), files={})
    try:
        result = write_archive(archive, record, ctx.client.download_file)
    except Exception as exc:
        archiving.write_state(redis, keys, settings, batch_id, status="failed", url=archive.public_url(
            archive.folder(record)), files={}, error=f"{type(exc).__name__}: {exc}"[:500])
        redis.hincrby(archiving.counters_key(keys), "failed", 1)
        raise
    archiving.write_state(redis, keys, settings, batch_id, status="archived", url=result["url"],
                          files=result["files"])
    pipe = redis.pipeline(transaction=False)
    pipe.hincrby(archiving.counters_key(keys), "archived_batches", 1 if result["written"] else 0)
    pipe.hincrby(archiving.counters_key(keys), "files", len(result["written"]))
    pipe.hincrby(archiving.counters_key(keys), "bytes",
                 sum(result["files"][name]["bytes"] for name in result["written"]))
    pipe.execute()
    log.info("archived %s: %s", batch_id, ", ".join(result["written"]) or "already whole",
             extra={"batch_id": batch_id})
    return "archived" if result["written"] else "already_whole"
