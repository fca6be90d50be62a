"""Staff API of background jobs, mounted at /api/admin/: list, detail, create, cancel, kinds.

Thin views (HackSoft style): parse with an inline serializer, call one service or selector, answer.
"""
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.models import Job
from jobs.runners import RUNNERS, RunnerError
from jobs.selectors import jobs_list
from jobs.services import JobError, job_cancel, job_create


class JobOutputSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None)

    class Meta:
        model = Job
        fields = [
            "id", "kind", "params", "state", "progress", "message", "log_tail", "error", "result",
            "cancel_requested", "worker", "heartbeat_at", "created_by", "created_at", "started_at", "finished_at",
        ]


class JobListApi(APIView):
    permission_classes = [IsAdminUser]

    class InputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=Job.Kind.choices)
        params = serializers.DictField(required=False, default=dict)

    @extend_schema(responses=JobOutputSerializer(many=True))
    def get(self, request):
        jobs = jobs_list(state=request.query_params.get("state"), kind=request.query_params.get("kind"))[:200]
        return Response(JobOutputSerializer(jobs, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: JobOutputSerializer})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            job = job_create(kind=data.validated_data["kind"], params=data.validated_data["params"],
                             created_by=request.user, confine_paths=True)
        except (RunnerError, JobError) as exc:
            return Response({"params": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        job.refresh_from_db()  # its state now: queued, or already running in the background
        return Response(JobOutputSerializer(job).data, status=status.HTTP_201_CREATED)


class JobDetailApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses=JobOutputSerializer)
    def get(self, request, pk: int):
        return Response(JobOutputSerializer(get_object_or_404(Job, pk=pk)).data)


class JobCancelApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=None, responses=JobOutputSerializer)
    def post(self, request, pk: int):
        try:
            job = job_cancel(job=get_object_or_404(Job, pk=pk))
        except JobError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(JobOutputSerializer(job).data)


class JobKindsApi(APIView):
    """Each kind of job with its parameters, as the admin's launch forms show them."""

    permission_classes = [IsAdminUser]

    @extend_schema(responses=dict)
    def get(self, request):
        return Response([
            {
                "kind": runner.kind, "label": Job.Kind(runner.kind).label, "help": runner.help,
                "params": [
                    {"name": p.name, "type": p.type.__name__, "required": p.required, "default": p.default,
                     "help": p.help, "choices": list(p.choices), "kind": p.kind}
                    for p in runner.params
                ],
            }
            for runner in RUNNERS.values()
        ])
