"""URL patterns of the evaluation app's staff API (mounted at /api/admin/)."""
from django.urls import path

from evaluation.api import MetricResultDetailApi, MetricResultListApi

urlpatterns = [
    path("metric-results/", MetricResultListApi.as_view(), name="api-metric-result-list"),
    path("metric-results/<int:pk>/", MetricResultDetailApi.as_view(), name="api-metric-result-detail"),
]
