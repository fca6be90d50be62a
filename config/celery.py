"""The Celery application.

With `CELERY_BROKER_URL` unset (the embedded default), settings make every task run in-process
(eager); with it set, tasks travel through the broker to workers started with
`celery -A config worker`.
"""
import os
import socket

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("histosynth")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="config.health_check")
def health_check() -> dict:
    """Report which process ran the task: lets a test prove a separate worker answered."""
    return {"hostname": socket.gethostname(), "pid": os.getpid()}


# Periodic tasks, for `celery -A config beat`: remove media no row references (and dead imports' staging).
app.conf.beat_schedule = {
    **(app.conf.beat_schedule or {}),
    "readerstudy-media-sweep": {"task": "readerstudy.media_sweep", "schedule": 6 * 3600.0},
}
