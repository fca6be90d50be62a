"""URL patterns of the jobs staff API (mounted at /api/admin/)."""
from django.urls import path

from jobs import api

app_name = "jobs-api"

urlpatterns = [
    path("jobs/", api.JobListApi.as_view(), name="job-list"),
    path("jobs/kinds/", api.JobKindsApi.as_view(), name="job-kinds"),
    path("jobs/<int:pk>/", api.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<int:pk>/cancel/", api.JobCancelApi.as_view(), name="job-cancel"),
]
