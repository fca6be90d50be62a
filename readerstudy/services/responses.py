"""Answering a study: serving a reader's next item and storing their answers.

- `reader_next_item` serves the first unanswered item of the reader's own fixed order and records,
  the first time an item is served, when it was shown (`Presentation.shown_at`, server time);
- `response_submit` stores an answer: idempotent on the page-made `client_id`, one answer per
  reader and item (held by the database, so two tabs keep exactly one), revisions only where the
  study allows them, nothing into a study that is not open, the reading time computed on the
  server, and the assignment marked finished with its last answer;
- `response_submit_and_next` does both in one request, so that the rating page needs one round
  trip per answer (the answer stored, then the next item served, as a later GET next/ would).

Each is a few indexed queries whatever the study's size (pinned by tests/readerstudy/test_responses_queries.py).

Errors are `ResponseError` subclasses whose `code` names the rule and whose message is for people.
"""
import uuid
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from readerstudy import selectors
from readerstudy.models import Presentation, Response, Study, StudyItem, StudyReader, Truth


class ResponseError(ValueError):
    """An answer or request for the next item was refused; `code` names the rule broken."""

    code = "invalid"


class InvalidAnswerError(ResponseError):
    code = "invalid"


class StudyNotOpenError(ResponseError):
    code = "study_not_open"


class ItemNotInStudyError(ResponseError):
    code = "unknown_item"


class ItemNotShownError(ResponseError):
    code = "not_shown"


class AlreadyAnsweredError(ResponseError):
    code = "already_answered"

    def __init__(self, message: str, *, response: Response):
        super().__init__(message)
        self.response = response


class ClientIdConflictError(ResponseError):
    code = "client_id_conflict"


@dataclass(frozen=True)
class NextItem:
    """What a reader sees next: an item and where it stands, or that the study is done."""

    done: bool
    item: StudyItem | None = None
    # 1-based place within its phase (practice items, then the study proper), and the phase's size.
    position: int = 0
    total: int = 0
    practice: bool = False
    shown_at: object = None
    # The item after this one, for the page to preload its image; never recorded as shown.
    following: StudyItem | None = None
    answered: int = 0
    total_all: int = 0


@dataclass(frozen=True)
class SubmitResult:
    response: Response
    created: bool
    revised: bool = False


def reader_next_item(*, assignment: StudyReader, study: Study | None = None) -> NextItem:
    """The reader's next unanswered item in their own order, recording when it was first shown.

    `study`, where given, must have been read from the database in this same request (its state
    is checked); by default it is read afresh, not taken from when the caller loaded `assignment`.
    """
    if study is None:
        study = Study.objects.only("id", "name", "state").get(pk=assignment.study_id)
    progress = selectors.assignment_progress(assignment=assignment)
    if progress.next_index is None:
        assignment_mark_finished(assignment=assignment)
        return NextItem(done=True, answered=progress.answered, total_all=progress.total_all)
    if study.state != Study.State.OPEN:
        raise StudyNotOpenError(f"study {study.name!r} is {study.get_state_display().lower()}: it takes no answers")
    item = progress.next_item
    shown_at = progress.next_shown_at
    if shown_at is None:  # not shown before (as just read): record it now
        shown_at = _presentation_create(assignment=assignment, item=item).shown_at
    return NextItem(
        done=False,
        item=item,
        position=progress.position,
        total=progress.phase_total,
        practice=item.role == StudyItem.Role.PRACTICE,
        shown_at=shown_at,
        following=progress.following_item,
        answered=progress.answered,
        total_all=progress.total_all,
    )


def presentation_record(*, assignment: StudyReader, item: StudyItem) -> Presentation:
    """Record that `item` is shown to the reader now, unless it was shown before (then keep that time)."""
    existing = Presentation.objects.filter(assignment=assignment, item=item).first()
    if existing is not None:
        return existing
    return _presentation_create(assignment=assignment, item=item)


def _presentation_create(*, assignment: StudyReader, item: StudyItem) -> Presentation:
    try:
        with transaction.atomic():
            return Presentation.objects.create(assignment=assignment, item=item, shown_at=timezone.now())
    except IntegrityError:  # served at the same moment in another tab: the first time wins
        return Presentation.objects.get(assignment=assignment, item=item)


def response_submit(
    *, assignment: StudyReader, item_token: str, answer: str, confidence: int, client_id: str | uuid.UUID
) -> SubmitResult:
    """Store the reader's answer to the item with `item_token`.

    A repeat of an earlier request (same `client_id`) returns the stored response unchanged. A
    second answer to an answered item (another tab, another `client_id`) revises it where the
    study allows revisions and is refused with `AlreadyAnsweredError` otherwise.
    """
    result, _study = _submit(
        assignment=assignment, item_token=item_token, answer=answer, confidence=confidence, client_id=client_id
    )
    if result.created:
        assignment_mark_finished(assignment=assignment)
    return result


def response_submit_and_next(
    *, assignment: StudyReader, item_token: str, answer: str, confidence: int, client_id: str | uuid.UUID
) -> tuple[SubmitResult, NextItem | None]:
    """`response_submit`, then the reader's next item, served (and recorded as shown) at once.

    The next item is None after a practice item: the page shows the feedback first and asks for
    the next item when the reader moves on, so that the reading time starts when it is shown. A
    study left closed answers the stored response and no next item rather than refusing.
    """
    result, study = _submit(
        assignment=assignment, item_token=item_token, answer=answer, confidence=confidence, client_id=client_id
    )
    if result.response.item.role == StudyItem.Role.PRACTICE:
        if result.created:
            assignment_mark_finished(assignment=assignment)
        return result, None
    try:
        # Marks the assignment finished when this was the last answer.
        return result, reader_next_item(assignment=assignment, study=study)
    except StudyNotOpenError:  # a repeat of an answer given before the study was closed
        return result, None


def _submit(
    *, assignment: StudyReader, item_token: str, answer: str, confidence: int, client_id: str | uuid.UUID
) -> tuple[SubmitResult, Study | None]:
    """Store the answer; return it with the study as read now (None for a repeat by client_id)."""
    try:
        client_uuid = client_id if isinstance(client_id, uuid.UUID) else uuid.UUID(str(client_id))
    except ValueError as exc:
        raise InvalidAnswerError(f"client_id {client_id!r}: not a UUID") from exc

    stored = _stored_by_client_id(assignment=assignment, item_token=item_token, client_uuid=client_uuid)
    if stored is not None:
        return SubmitResult(response=stored, created=False), None

    # The item, its study as it is now, and when the item was first shown to this reader: one query.
    shown = Presentation.objects.filter(assignment=assignment, item=OuterRef("pk")).values("shown_at")[:1]
    item = (
        StudyItem.objects.filter(study_id=assignment.study_id, token=item_token)
        .select_related("study")
        .only("id", "token", "role", "truth", "study__id", "study__name", "study__state", "study__allow_revision",
              "study__confidence_min", "study__confidence_max")
        .annotate(first_shown_at=Subquery(shown))
        .order_by()  # the token is unique; StudyItem's default ordering would sort by the study's
        .first()
    )
    study = item.study if item is not None else Study.objects.get(pk=assignment.study_id)
    if study.state != Study.State.OPEN:
        raise StudyNotOpenError(f"study {study.name!r} is {study.get_state_display().lower()}: it takes no answers")
    if answer not in Truth.values:
        raise InvalidAnswerError(f"answer {answer!r}: expected one of {', '.join(Truth.values)}")
    if isinstance(confidence, bool) or not isinstance(confidence, int):
        raise InvalidAnswerError(f"confidence {confidence!r}: expected a whole number")
    if not study.confidence_min <= confidence <= study.confidence_max:
        raise InvalidAnswerError(
            f"confidence {confidence} is off the scale: expected {study.confidence_min} to {study.confidence_max}"
        )
    if item is None or item.pk not in assignment.item_order:
        raise ItemNotInStudyError("item: no such item in this study")
    if item.first_shown_at is None:
        raise ItemNotShownError("item: this item has not been shown yet; answer the items in the order served")

    now = timezone.now()
    try:
        with transaction.atomic():
            response = Response.objects.create(
                assignment=assignment,
                item=item,
                answer=answer,
                confidence=confidence,
                client_id=client_uuid,
                shown_at=item.first_shown_at,
                answered_at=now,
                seconds=max(0.0, (now - item.first_shown_at).total_seconds()),
            )
    except IntegrityError:
        # Either this very request raced with its own retry (same client_id), or the item was
        # answered already (another tab): the database constraint decided which one is kept.
        stored = _stored_by_client_id(assignment=assignment, item_token=item_token, client_uuid=client_uuid)
        if stored is not None:
            return SubmitResult(response=stored, created=False), study
        revised = _response_revise(
            study=study, assignment=assignment, item=item, answer=answer, confidence=confidence,
            client_uuid=client_uuid, now=now,
        )
        return revised, study
    return SubmitResult(response=response, created=True), study


def _stored_by_client_id(*, assignment: StudyReader, item_token: str, client_uuid: uuid.UUID) -> Response | None:
    stored = Response.objects.filter(client_id=client_uuid).select_related("item").first()
    if stored is None:
        return None
    if stored.assignment_id != assignment.pk or stored.item.token != item_token:
        raise ClientIdConflictError("client_id: already used for another answer; make a new one per answer")
    return stored


def _response_revise(
    *, study: Study, assignment: StudyReader, item: StudyItem, answer: str, confidence: int,
    client_uuid: uuid.UUID, now,
) -> SubmitResult:
    with transaction.atomic():
        existing = Response.objects.select_for_update().get(assignment=assignment, item=item)
        if not study.allow_revision:
            raise AlreadyAnsweredError(
                "item: answered already (perhaps in another tab); this study does not allow changing answers",
                response=existing,
            )
        existing.answer = answer
        existing.confidence = confidence
        # The newest request's id, so that a retry of this revision is recognised as a repeat.
        existing.client_id = client_uuid
        existing.revised_at = now
        existing.save(update_fields=["answer", "confidence", "client_id", "revised_at"])
    return SubmitResult(response=existing, created=False, revised=True)


def assignment_mark_finished(*, assignment: StudyReader) -> StudyReader:
    """Set `finished_at` once every item of the reader's order is answered (first time only)."""
    if assignment.finished_at is not None:
        return assignment
    answered = Response.objects.filter(assignment=assignment, item_id__in=assignment.item_order).count()
    if answered >= len(assignment.item_order):
        now = timezone.now()
        StudyReader.objects.filter(pk=assignment.pk, finished_at__isnull=True).update(finished_at=now)
        assignment.refresh_from_db(fields=["finished_at"])
    return assignment
