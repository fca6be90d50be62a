"""Celery tasks of background jobs: `run_job` runs one stored job by its primary key.

The task is a thin wrapper around `services.job_execute`, which makes the state transitions
atomically and records start, end, result, error and traceback tail. `mark_stale_jobs` fails the
jobs whose worker died; schedule it with Celery beat, or let the admin's job list call it.
"""
from celery import shared_task

from jobs.services import job_execute, job_mark_stale


@shared_task(name="jobs.run_job", acks_late=True)
def run_job(job_pk: int) -> dict:
    job = job_execute(job_pk=job_pk)
    return {"job": job.pk, "state": job.state}


@shared_task(name="jobs.mark_stale_jobs")
def mark_stale_jobs() -> list[int]:
    return [job.pk for job in job_mark_stale()]
