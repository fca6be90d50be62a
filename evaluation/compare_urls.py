"""The generator comparison of a study, mounted under /results/<study_id>/compare/."""
from django.urls import path

from evaluation import views

urlpatterns = [
    path("", views.compare_page, name="results-compare"),
    path("generators.csv", views.compare_csv, name="results-compare-csv"),
    path("scatter.svg", views.compare_scatter, name="results-compare-scatter"),
]
