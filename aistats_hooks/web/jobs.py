"""Failed work over HTTP: ``GET /jobs/failed`` and ``POST /jobs/failed/requeue``, behind the token.

The same views as the CLI's ``failed`` and ``requeue``, read from RQ's
FailedJobRegistry through ``aistats_hooks.dead_letters``.
"""

from __future__ import annotations

import re

from flask import Blueprint, jsonify, request

from .. import dead_letters
from . import params
from .auth import require_token
from .context import get_store
from .errors import error

bp = Blueprint("jobs", __name__)
MAX_LIMIT = 1000
# RQ's own rule for job ids (it raises ValueError on anything else).
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,256}")


@bp.get("/jobs/failed")
@require_token
def failed_jobs():
    """Return the newest failed reconciles and how many there are."""
    params.only({"limit"})
    count = params.limit(100, MAX_LIMIT)
    queue = get_store().queue
    return jsonify({"count": dead_letters.count(queue), "data": dead_letters.failed_jobs(queue, limit=count)})


@bp.post("/jobs/failed/requeue")
@require_token
def requeue():
    """Requeue one failed job (``{"job_id": ...}``) or all of them (``{"all": true}``)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or set(body) - {"job_id", "all"}:
        return error(400, "bad_request", 'expected a JSON object {"job_id": "..."} or {"all": true}')
    job_id, everything = body.get("job_id"), body.get("all")
    if everything is not None and not isinstance(everything, bool):
        return error(400, "bad_request", '"all" must be true or false')
    if bool(everything) == (job_id is not None):
        return error(400, "bad_request", 'give either "job_id" or "all": true')
    queue = get_store().queue
    if everything:
        return jsonify({"requeued": dead_letters.requeue_all(queue)})
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        return error(400, "bad_request", '"job_id" must be an RQ job id (letters, digits, _ and -; up to 256)')
    if not dead_letters.requeue(queue, job_id):
        return error(404, "not_found", f"no failed job {job_id!r}")
    return jsonify({"requeued": 1, "job_id": job_id})
