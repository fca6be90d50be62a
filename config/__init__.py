"""The Django project package: settings, URLs, WSGI and the Celery app.

Importing the package loads the Celery app so that `@shared_task` functions bind to it.
"""
from config.celery import app as celery_app

__all__ = ["celery_app"]
