"""Background jobs (training, sampling, patch extraction, metrics, study building) run through Celery."""
