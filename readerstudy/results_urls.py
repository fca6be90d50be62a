"""Staff-only results pages under /results/: study list, a study's statistics, plots and CSV downloads."""
from django.urls import include, path

from readerstudy import results_views

urlpatterns = [
    path("", results_views.results_index, name="results-index"),
    path("<int:study_id>/planning/", results_views.results_planning, name="results-planning"),
    path("<int:study_id>/images/<int:item_id>.png", results_views.results_item_image, name="results-item-image"),
    path("<int:study_id>/", results_views.results_study, name="results-study"),
    path("<int:study_id>/plots/<str:name>.<str:fmt>", results_views.results_plot, name="results-plot"),
    path("<int:study_id>/export/<str:name>.csv", results_views.results_export, name="results-export"),
    path("<int:study_id>/compare/", include("evaluation.compare_urls")),
]
