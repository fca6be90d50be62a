"""`manage.py mark_stale_jobs [--minutes 10]`: fail the running jobs whose worker died (for cron when
no Celery beat runs; the admin's job list does the same each time it is opened)."""
from datetime import timedelta

from django.core.management.base import BaseCommand

from jobs.services import STALE_AFTER, job_mark_stale


class Command(BaseCommand):
    help = "Mark running jobs failed when their heartbeat is too old or Celery reports their task lost."

    def add_arguments(self, parser):
        parser.add_argument("--minutes", type=float, default=STALE_AFTER.total_seconds() / 60,
                            help="heartbeat age after which a running job is taken for dead")

    def handle(self, *args, minutes: float, **options):
        for job in job_mark_stale(timeout=timedelta(minutes=minutes)):
            self.stdout.write(f"job #{job.pk} ({job.kind}) marked failed: {job.error}")
