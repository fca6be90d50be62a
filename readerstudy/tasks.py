"""Celery tasks of the reader study: the periodic media sweep (scheduled in `config.celery`)."""
from celery import shared_task

from readerstudy.services.media import media_sweep


@shared_task(name="readerstudy.media_sweep")
def media_sweep_task(delete: bool = True, min_age_minutes: float = 60.0) -> dict:
    report = media_sweep(delete=delete, min_age_seconds=60.0 * min_age_minutes)
    return {"orphans": len(report.orphans), "staged_removed": len(report.staged_removed),
            "staged_restored": len(report.staged_restored), "deleted": report.deleted}
