"""Reads of background jobs for the admin and the API."""
from django.db.models import QuerySet

from jobs.models import Job


def jobs_list(*, state: str | None = None, kind: str | None = None) -> QuerySet[Job]:
    qs = Job.objects.select_related("created_by").order_by("-created_at")
    if state:
        qs = qs.filter(state=state)
    if kind:
        qs = qs.filter(kind=kind)
    return qs


def job_is_active(job: Job) -> bool:
    return job.state in (Job.State.QUEUED, Job.State.RUNNING)
