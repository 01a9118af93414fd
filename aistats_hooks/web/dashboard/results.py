"""``/dashboard/batches/<id>/results``: a batch's results, fetched from the gateway, as a download.

The web process fetches them through the SDK (the results route where the gateway has
it, else the output and error files) into a temporary file, streamed back and removed
after: bounded memory whatever the size. It needs ``AISTATS_API_KEY`` like a worker; each
download is one of the gateway's 10 per batch per 30 minutes.
"""

from __future__ import annotations

import os
import tempfile

from flask import abort, send_file

from ...errors import AIStatsError
from ...sdk import AIStats
from ..context import get_settings, get_store
from . import access, bp


@bp.get("/batches/<batch_id>/results")
@access.login_required
def results(batch_id: str):
    """Send the batch's results JSONL as a file."""
    record = get_store().get(batch_id)
    if record is None:
        abort(404, description=f"No batch {batch_id} is known here.")
    if not (record.get("output_file_id") or record.get("error_file_id")):
        abort(404, description="This batch has no results yet: no output or error file.")
    settings = get_settings()
    if not settings.api_key:
        abort(503, description="This web process has no AISTATS_API_KEY, so it cannot fetch results from the "
                               "gateway; use `aistats-hooks results BATCH_ID` where the key is set.")
    handle, path = tempfile.mkstemp(prefix="aistats-results-", suffix=".jsonl")
    os.close(handle)
    try:
        with AIStats(settings.api_key, settings.base_url, timeout=settings.upstream_timeout) as client:
            client.download_results(batch_id, path)
        response = send_file(path, mimetype="application/x-ndjson", as_attachment=True,
                             download_name=f"{batch_id}-results.jsonl")
    except AIStatsError as exc:
        os.unlink(path)
        abort(502, description=f"The gateway did not give the results: {type(exc).__name__}: {exc}"[:300])
    except BaseException:
        os.unlink(path)
        raise
    response.call_on_close(lambda: os.path.exists(path) and os.unlink(path))
    return response
