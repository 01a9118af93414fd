"""The chaos run's archive check: every ended batch with files archived whole, once.

The run archives to ``file://<run folder>/archive`` (``AISTATS_ARCHIVE_URL``). Once
the archive queue has drained, each batch the sandbox ended with an output or error
file must show ``archive.files`` on ``GET /batches/<id>``, each file's sha256 equal
to the sandbox's content of that file; and the service's counter of files written
must equal the files archived (a file rewritten would count twice).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time

from rq import Queue
from rq.registry import DeferredJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from aistats_hooks import job_queues
from aistats_hooks.effects.archive import FILES
from aistats_hooks.sdk import AIStats


def env(stack) -> dict[str, str]:
    """The settings that turn archiving on for the run's processes."""
    return {"AISTATS_ARCHIVE_URL": f"file://{stack.dir / 'archive'}"}


def _left(stack) -> int:
    queue = job_queues.of(Queue(stack.prefix, connection=stack.redis()), "archive")
    ids = list(queue.get_job_ids())
    for registry in (DeferredJobRegistry, ScheduledJobRegistry, StartedJobRegistry):
        ids += registry(queue=queue).get_job_ids()
    ids += queue.intermediate_queue.get_job_ids()
    ids += queue.ready_job_registry.get_job_ids()
    return len(ids)


def _sha256(sdk: AIStats, file_id: str) -> str:
    """The sha256 of the sandbox's content of ``file_id``, through the SDK as the archive job reads it."""
    with tempfile.TemporaryDirectory(prefix="aistats-chaos-file-") as scratch:
        path = os.path.join(scratch, "content")
        sdk.download_file(file_id, path)
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()


def check(stack, reader, batch_ids, *, timeout: float = 180.0, on_wait=None) -> dict:
    """Wait for the archive queue to drain (up to ``timeout``), then compare every archived file with the truth."""
    deadline = time.monotonic() + timeout
    while (left := _left(stack)) and time.monotonic() < deadline:
        if on_wait:
            on_wait(left)
        time.sleep(2)
    expected = missing = mismatched = 0
    examples: list[str] = []
    with AIStats(stack.api_key, stack.sandbox_url + "/v1", timeout=30) as sdk:
        for batch_id in batch_ids:
            truth = reader.truth(batch_id)
            wanted = [(name, truth[field]) for name, field in FILES if truth.get(field)]
            if not wanted:
                continue
            archived = ((reader.ours(batch_id) or {}).get("archive") or {}).get("files") or {}
            for name, file_id in wanted:
                expected += 1
                entry = archived.get(name)
                if not entry or entry.get("file_id") != file_id:
                    missing += 1
                    examples.append(f"{batch_id}/{name}: missing")
                elif entry.get("sha256") != _sha256(sdk, file_id):
                    mismatched += 1
                    examples.append(f"{batch_id}/{name}: sha256 differs")
    written = int(stack.redis().hget(f"{stack.prefix}:m:archive", "files") or 0)
    return {"archive_expected": expected, "archive_missing": missing, "archive_mismatched": mismatched,
            "archive_duplicated": max(0, written - (expected - missing)), "archive_written": written,
            "archive_jobs_left": _left(stack), "archive_examples": examples[:10]}
