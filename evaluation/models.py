"""Stored metric results: one row per (real set, fake set, label, extractor) evaluation.

Written by `evaluation.services.metric_result_create`; the `metrics` keys are
`evaluation.evaluate.METRIC_KEYS` (None where a metric was not computed).
"""
from django.db import models

from readerstudy.models import ImageSet


class MetricResult(models.Model):
    real_set = models.ForeignKey(ImageSet, on_delete=models.CASCADE, related_name="metric_results_as_real")
    fake_set = models.ForeignKey(ImageSet, on_delete=models.CASCADE, related_name="metric_results_as_fake")
    # "" for the whole sets; a class label for the per-label rows.
    label = models.CharField(max_length=100, blank=True)
    # "inception-v3-tf-2015-12-05" or "random-inception" (uncalibrated).
    extractor = models.CharField(max_length=100)
    weights_sha256 = models.CharField(max_length=64, blank=True)
    calibrated = models.BooleanField(default=True)
    n_real = models.PositiveIntegerField(default=0)
    n_fake = models.PositiveIntegerField(default=0)
    # {"fid": ..., "sfid": ..., "is_mean": ..., "is_std": ..., "precision": ..., "recall": ..., "kid_mean": ..., ...}
    metrics = models.JSONField(default=dict)
    warnings = models.JSONField(default=list, blank=True)
    # Settings and extras: metric options, memorisation's closest pairs, the uncalibrated note.
    details = models.JSONField(default=dict, blank=True)
    # Generated images beside their nearest real images (overall row only).
    memorisation_grid = models.FileField(upload_to="evaluation/grids/", max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["fake_set", "label", "-created_at"])]

    def __str__(self) -> str:
        scope = f" [{self.label}]" if self.label else ""
        return f"{self.fake_set} vs {self.real_set}{scope} ({self.extractor})"
