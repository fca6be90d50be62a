"""Staff-only read API of stored metric results (mounted under /api/admin/)."""
from rest_framework import generics, serializers
from rest_framework.permissions import IsAdminUser

from evaluation.models import MetricResult
from evaluation.selectors import metric_result_list


class MetricResultSerializer(serializers.ModelSerializer):
    real_set_name = serializers.CharField(source="real_set.name", read_only=True)
    fake_set_name = serializers.CharField(source="fake_set.name", read_only=True)
    memorisation_grid = serializers.FileField(read_only=True, use_url=True)

    class Meta:
        model = MetricResult
        fields = ["id", "real_set", "real_set_name", "fake_set", "fake_set_name", "label", "extractor",
                  "weights_sha256", "calibrated", "n_real", "n_fake", "metrics", "warnings", "details",
                  "memorisation_grid", "created_at"]
        read_only_fields = fields


def _int_param(request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    if not value.isdigit():
        raise serializers.ValidationError({name: f"{value!r} is not an id"})
    return int(value)


class MetricResultListApi(generics.ListAPIView):
    """Metric results, newest first; filters: ?real_set=<id>&fake_set=<id>&label=<label>&extractor=<name>."""

    permission_classes = [IsAdminUser]
    serializer_class = MetricResultSerializer

    def get_queryset(self):
        params = self.request.query_params
        return metric_result_list(
            real_set_id=_int_param(self.request, "real_set"), fake_set_id=_int_param(self.request, "fake_set"),
            label=params.get("label"), extractor=params.get("extractor"),
        )


class MetricResultDetailApi(generics.RetrieveAPIView):
    permission_classes = [IsAdminUser]
    serializer_class = MetricResultSerializer

    def get_queryset(self):
        return metric_result_list()
