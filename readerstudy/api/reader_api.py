"""The reader API used by the rating page (session authentication with CSRF).

- `GET  studies/`: the studies assigned to the user, with progress;
- `GET  studies/<id>/next/`: the next item (token, image URL, position, total, practice flag), or done;
- `POST studies/<id>/responses/`: `item`, `answer`, `confidence`, `client_id` (and optionally
  `active_seconds`, the page's reading time with the clock stopped while hidden) -> the stored answer
  (201 when new, 200 for a repeat of the same `client_id` or a revision), with feedback for a
  practice item; with `include_next: true` also `next`, the body GET next/ would answer now (or
  null after a practice item or once the study is closed), so the page needs one request per answer;
- `GET/PUT/DELETE studies/<id>/items/<token>/flag/`: the reader's flag on an item shown to them, with
  an optional `comment` (never changes the answer; says nothing about the item's truth).

Thin views: parse, call one selector or service, respond. A study the user is not assigned to, or a
draft, answers 404 whoever asks; refusals carry `detail` (for people) and `code` (for the page).
"""
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response as ApiResponse
from rest_framework.views import APIView

from readerstudy import selectors
from readerstudy.api.reader_serializers import (
    NextItemSerializer,
    FlagInputSerializer,
    FlagSerializer,
    ResponseInputSerializer,
    StoredResponseWithNextSerializer,
    StudySummarySerializer,
    next_item_body,
    response_input_fast,
    stored_response_body,
)
from readerstudy.models import StudyItem
from readerstudy.services import flags as flag_services
from readerstudy.services import responses as response_services

_ERROR_STATUS = {
    response_services.InvalidAnswerError: status.HTTP_400_BAD_REQUEST,
    response_services.StudyNotOpenError: status.HTTP_409_CONFLICT,
    response_services.ItemNotInStudyError: status.HTTP_404_NOT_FOUND,
    response_services.ItemNotShownError: status.HTTP_409_CONFLICT,
    response_services.AlreadyAnsweredError: status.HTTP_409_CONFLICT,
    response_services.ClientIdConflictError: status.HTTP_409_CONFLICT,
}


def _refusal(exc: response_services.ResponseError) -> ApiResponse:
    code = _ERROR_STATUS.get(type(exc), status.HTTP_400_BAD_REQUEST)
    return ApiResponse({"detail": str(exc), "code": exc.code}, status=code)


def _assignment_or_404(request: Request, study_id: int):
    assignment = selectors.reader_assignment_get(user=request.user, study_id=study_id)
    if assignment is None:
        raise Http404("No such study.")
    return assignment


class ReaderStudyListApi(APIView):
    @extend_schema(summary="The studies assigned to me, with progress", responses=StudySummarySerializer(many=True))
    def get(self, request: Request) -> ApiResponse:
        rows = selectors.reader_study_summaries(user=request.user)
        return ApiResponse(StudySummarySerializer(rows, many=True).data)


class ReaderNextItemApi(APIView):
    @extend_schema(
        summary="My next item (recorded as shown the first time), or that I am done",
        responses={
            200: NextItemSerializer,
            404: OpenApiResponse(description="not assigned to this study, or it is a draft"),
            409: OpenApiResponse(description="the study is closed (code study_not_open)"),
        },
    )
    def get(self, request: Request, study_id: int) -> ApiResponse:
        assignment = _assignment_or_404(request, study_id)
        try:
            # The study was read with the assignment, in this request: its state is current.
            nxt = response_services.reader_next_item(assignment=assignment, study=assignment.study)
        except response_services.ResponseError as exc:
            return _refusal(exc)
        return ApiResponse(next_item_body(nxt))


class ReaderResponseApi(APIView):
    @extend_schema(
        summary="Answer an item: idempotent on client_id; one answer per item",
        request=ResponseInputSerializer,
        responses={
            201: OpenApiResponse(StoredResponseWithNextSerializer, description="stored; `next` only with include_next"),
            200: OpenApiResponse(
                StoredResponseWithNextSerializer, description="a repeat of the same client_id, or a revision"
            ),
            400: OpenApiResponse(description="a malformed answer, or a confidence off the study's scale"),
            404: OpenApiResponse(description="not assigned to this study, or no such item in it"),
            409: OpenApiResponse(
                description="already answered (revisions not allowed), study not open, item not shown yet, "
                "or client_id used for another answer; `code` says which"
            ),
        },
    )
    def post(self, request: Request, study_id: int) -> ApiResponse:
        assignment = _assignment_or_404(request, study_id)
        v = response_input_fast(request.data)
        if v is None:  # not the page's usual shape: the serializer decides, and words the errors
            data = ResponseInputSerializer(data=request.data)
            if not data.is_valid():
                fields = "; ".join(f"{name}: {' '.join(map(str, errs))}" for name, errs in data.errors.items())
                return ApiResponse({"detail": fields, "code": "invalid", "fields": data.errors}, status=400)
            v = data.validated_data
        try:
            kwargs = dict(
                item_token=v["item"], answer=v["answer"], confidence=v["confidence"], client_id=v["client_id"],
                active_seconds=v["active_seconds"],
            )
            if v["include_next"]:
                result, nxt = response_services.response_submit_and_next(assignment=assignment, **kwargs)
            else:
                result, nxt = response_services.response_submit(assignment=assignment, **kwargs), None
        except response_services.AlreadyAnsweredError as exc:
            body = {"detail": str(exc), "code": exc.code, "response": stored_response_body(exc.response)}
            return ApiResponse(body, status=status.HTTP_409_CONFLICT)
        except response_services.ResponseError as exc:
            return _refusal(exc)
        body = stored_response_body(result.response)
        item = result.response.item
        if item.role == StudyItem.Role.PRACTICE:
            # Practice items teach: after answering, the reader learns the truth (never for the study proper).
            body["feedback"] = {"truth": item.truth, "correct": result.response.answer == item.truth}
        if v["include_next"]:
            body["next"] = next_item_body(nxt) if nxt is not None else None
        return ApiResponse(body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class ReaderItemFlagApi(APIView):
    """One reader's flag on one item they have been shown: read, set (with a comment) or clear."""

    _refusals = {
        404: OpenApiResponse(description="not assigned, or no such item shown to me (code unknown_item)"),
        409: OpenApiResponse(description="the study is not open (code study_not_open)"),
    }

    def _item(self, request: Request, study_id: int, token: str):
        assignment = _assignment_or_404(request, study_id)
        return assignment, flag_services.flaggable_item(assignment=assignment, item_token=token)

    @staticmethod
    def _flag_refusal(exc: flag_services.FlagError) -> ApiResponse:
        code = {"unknown_item": 404, "study_not_open": 409}.get(exc.code, 400)
        return ApiResponse({"detail": str(exc), "code": exc.code}, status=code)

    @staticmethod
    def _body(token: str, flag) -> dict:
        return FlagSerializer(
            {"item": token, "flagged": flag is not None, "comment": flag.comment if flag else ""}
        ).data

    @extend_schema(summary="My flag on an item shown to me", responses={200: FlagSerializer, **_refusals})
    def get(self, request: Request, study_id: int, token: str) -> ApiResponse:
        try:
            assignment, item = self._item(request, study_id, token)
        except flag_services.FlagError as exc:
            return self._flag_refusal(exc)
        return ApiResponse(self._body(token, selectors.item_flag_get(assignment=assignment, item=item)))

    @extend_schema(
        summary="Flag an item shown to me, with an optional comment (the answer is unchanged)",
        request=FlagInputSerializer,
        responses={200: FlagSerializer, 400: OpenApiResponse(description="comment too long"), **_refusals},
    )
    def put(self, request: Request, study_id: int, token: str) -> ApiResponse:
        data = FlagInputSerializer(data=request.data)
        if not data.is_valid():
            fields = "; ".join(f"{name}: {' '.join(map(str, errs))}" for name, errs in data.errors.items())
            return ApiResponse({"detail": fields, "code": "invalid", "fields": data.errors}, status=400)
        try:
            assignment, item = self._item(request, study_id, token)
            flag = flag_services.item_flag_set(
                assignment=assignment, item=item, comment=data.validated_data["comment"]
            )
        except flag_services.FlagError as exc:
            return self._flag_refusal(exc)
        return ApiResponse(self._body(token, flag))

    @extend_schema(summary="Remove my flag on an item", responses={200: FlagSerializer, **_refusals})
    def delete(self, request: Request, study_id: int, token: str) -> ApiResponse:
        try:
            assignment, item = self._item(request, study_id, token)
        except flag_services.FlagError as exc:
            return self._flag_refusal(exc)
        flag_services.item_flag_clear(assignment=assignment, item=item)
        return ApiResponse(self._body(token, None))
