"""Background jobs: what was asked, its state, progress, log tail and error."""
from django.conf import settings
from django.db import models


class Job(models.Model):
    class Kind(models.TextChoices):
        TRAIN_DIFFUSION = "train_diffusion", "Train diffusion model"
        TRAIN_PROGAN = "train_progan", "Train ProGAN"
        GENERATE_IMAGES = "generate_images", "Generate images"
        EXTRACT_PATCHES = "extract_patches", "Extract patches"
        EVALUATE_METRICS = "evaluate_metrics", "Evaluate metrics"
        BUILD_STUDY = "build_study", "Build study"
        IMPORT_STUDY = "import_study", "Import study archive"
        COMPARE_GENERATORS = "compare_generators", "Compare generators"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    # The keyword arguments of the plain function the job calls (JSON-serialisable).
    params = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    progress = models.FloatField(default=0.0)  # 0..1
    message = models.CharField(max_length=500, blank=True)
    log_tail = models.TextField(blank=True)
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    cancel_requested = models.BooleanField(default=False)
    celery_task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.state})"
