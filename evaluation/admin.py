"""Admin of stored metric results: read-only, with the metrics, warnings and memorisation grid."""
from django.contrib import admin
from django.utils.html import format_html

from evaluation.models import MetricResult


def _metric(key: str, title: str):
    def show(obj: MetricResult):
        value = (obj.metrics or {}).get(key)
        return "-" if value is None else f"{value:.4g}"

    show.short_description = title
    return show


@admin.register(MetricResult)
class MetricResultAdmin(admin.ModelAdmin):
    list_display = ("__str__", "label", "extractor", "calibrated", "n_real", "n_fake",
                    _metric("fid", "FID"), _metric("sfid", "sFID"), _metric("is_mean", "IS"),
                    _metric("precision", "precision"), _metric("recall", "recall"), "created_at")
    list_filter = ("calibrated", "extractor", "label")
    search_fields = ("real_set__name", "fake_set__name", "label")
    readonly_fields = [f.name for f in MetricResult._meta.fields] + ["grid_preview"]

    @admin.display(description="memorisation grid")
    def grid_preview(self, obj: MetricResult):
        if not obj.memorisation_grid:
            return "-"
        return format_html('<img src="{}" style="max-width: 300px">', obj.memorisation_grid.url)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
