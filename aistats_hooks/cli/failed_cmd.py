"""Failed work (dead letters): ``failed`` lists reconciles that failed for good, ``requeue`` retries them.

Both read and act on RQ's own FailedJobRegistry of the reconcile queue
through ``aistats_hooks.dead_letters``; nothing is copied out of RQ.
"""

from __future__ import annotations

import click

from .. import dead_letters
from .core import CommandError, Resources, emit, json_option, pass_res


def _row(job: dict) -> str:
    """Return one failed job as a line: when, job, batch, attempts, error."""
    return (f"{job.get('failed_at') or '-'}  {job['job_id']}  {job.get('batch_id') or job.get('function')}  "
            f"{job.get('summary') or 'attempts=' + str(job.get('attempts'))}  {job.get('error') or '(no error recorded)'}")


def next_steps(jobs: list[dict]) -> list[str]:
    """One line per kind of failure among ``jobs``: what to do about it."""
    steps = dict.fromkeys(job["next_step"] for job in jobs if job.get("next_step"))
    return [f"next: {step}" for step in steps]


@click.command()
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="Newest N failed jobs.")
@json_option
@pass_res
def failed(res: Resources, limit: int) -> None:
    """List reconciles that failed for good (batch, error, attempts, when), newest first."""
    queue = res.store.queue
    jobs = dead_letters.failed_jobs(queue, limit=limit)
    total = dead_letters.count(queue)
    lines = [_row(job) for job in jobs] or ["no failed jobs"]
    if total > len(jobs):
        lines.append(f"({total - len(jobs)} older not shown; --limit)")
    lines += next_steps(jobs)
    emit(res, {"count": total, "data": jobs}, lines)


@click.command()
@click.argument("job_id", required=False)
@click.option("--all", "all_jobs", is_flag=True, help="Requeue every failed job.")
@json_option
@pass_res
def requeue(res: Resources, job_id: str | None, all_jobs: bool) -> None:
    """Put a failed job (or --all of them) back on the queue, once the cause is fixed."""
    if bool(job_id) == all_jobs:
        raise click.UsageError("give a JOB_ID or --all (not both)")
    queue = res.store.queue
    if all_jobs:
        count = dead_letters.requeue_all(queue)
        emit(res, {"requeued": count}, f"requeued {count} failed job(s)")
        return
    try:
        found = dead_letters.requeue(queue, job_id)
    except ValueError:  # RQ refuses ids it could never have made
        found = False
    if not found:
        raise CommandError(f"no failed job {job_id!r} (see `failed`)")
    emit(res, {"requeued": 1, "job_id": job_id}, f"requeued {job_id}")


COMMANDS = (failed, requeue)
