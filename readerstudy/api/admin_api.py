"""Staff API (DRF): image sets, studies (build, upload, settings, state), items with their truth,
readers and their progress, and responses. Every endpoint answers 403 to anyone but staff.

Thin: serializers parse, one service call writes, the answer is the serialized result. Service
errors come back as 400 with `{"problems": [...]}`, each naming its row, file or field.
"""
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response as ApiResponse

from config.parsers import LimitedJSONParser
from jobs.models import Job
from readerstudy.api import admin_serializers as s
from readerstudy.models import ImageSet, Response, Study, StudyReader
from readerstudy.services.building import SetCount, study_build
from readerstudy.services.imports import StudyImportError, study_import_or_queue
from readerstudy.services.studies import StudyError, study_assign_readers, study_set_state, study_update_settings

PROBLEMS = OpenApiResponse(s.ProblemsSerializer, description="Every problem found; nothing was written.")


def _problems(exc: Exception) -> ApiResponse:
    problems = exc.problems if isinstance(exc, StudyImportError) else [str(exc)]
    return ApiResponse({"problems": problems}, status=status.HTTP_400_BAD_REQUEST)


def _create_arguments(data: dict) -> dict:
    kwargs = {k: v for k, v in data.items() if k not in ("real", "synthetic", "archive")}
    if "blinded_size" in kwargs:
        kwargs["blinded_size"] = tuple(kwargs["blinded_size"])
    return kwargs


class ImageSetViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [IsAdminUser]
    lookup_value_converter = "int"
    serializer_class = s.ImageSetSerializer
    queryset = ImageSet.objects.annotate(n_images=Count("images")).order_by("-created_at", "name")

    @extend_schema(responses=s.ImageSerializer(many=True))
    @action(detail=True, methods=["get"])
    def images(self, request: Request, pk=None) -> ApiResponse:
        image_set = self.get_object()
        page = self.paginate_queryset(image_set.images.order_by("id"))
        data = s.ImageSerializer(page if page is not None else image_set.images.order_by("id"), many=True).data
        return ApiResponse(data)


class StudyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [IsAdminUser]
    lookup_value_converter = "int"
    serializer_class = s.StudySerializer
    parser_classes = [LimitedJSONParser, MultiPartParser, FormParser]

    def get_queryset(self):
        return Study.objects.annotate(
            n_items=Count("items", distinct=True),
            n_readers=Count("assignments", distinct=True),
            n_responses=Count("assignments__responses", distinct=True),
        ).order_by("-created_at")

    def _study_response(self, study: Study, code=status.HTTP_200_OK) -> ApiResponse:
        return ApiResponse(s.StudySerializer(self.get_queryset().get(pk=study.pk)).data, status=code)

    @extend_schema(request=s.StudySettingsSerializer, responses={200: s.StudySerializer, 400: PROBLEMS})
    def partial_update(self, request: Request, pk=None) -> ApiResponse:
        study = self.get_object()
        parsed = s.StudySettingsSerializer(data=request.data, partial=True)
        parsed.is_valid(raise_exception=True)
        try:
            study_update_settings(study=study, **parsed.validated_data)
        except StudyError as exc:
            return _problems(exc)
        return self._study_response(study)

    @extend_schema(request=s.StudyBuildSerializer, responses={201: s.StudySerializer, 400: PROBLEMS})
    @action(detail=False, methods=["post"])
    def build(self, request: Request) -> ApiResponse:
        parsed = s.StudyBuildSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        data = parsed.validated_data
        try:
            study = study_build(
                real=SetCount(**data["real"]),
                synthetic=[SetCount(**entry) for entry in data["synthetic"]],
                **_create_arguments(data),
            )
        except StudyError as exc:
            return _problems(exc)
        return self._study_response(study, status.HTTP_201_CREATED)

    @extend_schema(
        request={"multipart/form-data": s.StudyUploadSerializer},
        responses={201: s.StudySerializer, 202: OpenApiResponse(description="A large archive: queued as an "
                   "import job; follow `url`."), 400: PROBLEMS},
    )
    @action(detail=False, methods=["post"], parser_classes=[MultiPartParser, FormParser])
    def upload(self, request: Request) -> ApiResponse:
        parsed = s.StudyUploadSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        try:
            study = study_import_or_queue(
                archive=parsed.validated_data["archive"], created_by=request.user,
                **_create_arguments(parsed.validated_data),
            )
        except (StudyImportError, StudyError) as exc:
            return _problems(exc)
        if isinstance(study, Job):  # a large archive: imported by a background job, followed at its URL
            url = reverse("jobs-api:job-detail", args=[study.pk])
            return ApiResponse({"job": study.pk, "state": study.state, "url": url}, status=status.HTTP_202_ACCEPTED)
        return self._study_response(study, status.HTTP_201_CREATED)

    @extend_schema(request=s.StudyStateSerializer, responses={200: s.StudySerializer, 400: PROBLEMS})
    @action(detail=True, methods=["post"])
    def state(self, request: Request, pk=None) -> ApiResponse:
        study = self.get_object()
        parsed = s.StudyStateSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        try:
            study_set_state(study=study, state=parsed.validated_data["state"])
        except StudyError as exc:
            return _problems(exc)
        return self._study_response(study)

    @extend_schema(responses=s.StudyItemSerializer(many=True))
    @action(detail=True, methods=["get"])
    def items(self, request: Request, pk=None) -> ApiResponse:
        study = self.get_object()
        items = study.items.select_related("image").order_by("id")
        return ApiResponse(s.StudyItemSerializer(items, many=True).data)

    @extend_schema(
        methods=["get"], responses=s.StudyReaderSerializer(many=True), description="Readers and their progress."
    )
    @extend_schema(
        methods=["post"], request=s.AssignReadersSerializer,
        responses={200: s.StudyReaderSerializer(many=True), 400: PROBLEMS},
        description="Assign users (by name); already-assigned readers keep their order.",
    )
    @action(detail=True, methods=["get", "post"])
    def readers(self, request: Request, pk=None) -> ApiResponse:
        study = self.get_object()
        if request.method == "POST":
            parsed = s.AssignReadersSerializer(data=request.data)
            parsed.is_valid(raise_exception=True)
            try:
                study_assign_readers(study=study, users=parsed.validated_data["users"])
            except StudyError as exc:
                return _problems(exc)
        assignments = (
            StudyReader.objects.filter(study=study).select_related("user")
            .annotate(answered=Count("responses")).order_by("pseudonym")
        )
        return ApiResponse(s.StudyReaderSerializer(assignments, many=True).data)

    @extend_schema(responses=s.ResponseSerializer(many=True))
    @action(detail=True, methods=["get"])
    def responses(self, request: Request, pk=None) -> ApiResponse:
        study = get_object_or_404(Study, pk=pk)
        rows = (
            Response.objects.filter(Q(assignment__study=study))
            .select_related("assignment", "item").order_by("assignment__pseudonym", "answered_at")
        )
        return ApiResponse(s.ResponseSerializer(rows, many=True).data)
