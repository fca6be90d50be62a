"""Answering a study: serving a reader's next item and storing their answers.

- `reader_next_item` serves the first unanswered item of the reader's own fixed order and records,
  the first time an item is served, when it was shown (`Presentation.shown_at`, server time);
- `response_submit` stores an answer: idempotent on the page-made `client_id`, one answer per
  reader and item (held by the database, so two tabs keep exactly one), revisions only where the
  study allows them, nothing into a study that is not open, the reading time computed on the
  server, and the assignment marked finished with its last answer.

Errors are `ResponseError` subclasses whose `code` names the rule and whose message is for people.
"""
import uuid
from dataclasses import dataclass

from django.db import IntegrityError, transaction
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


def reader_next_item(*, assignment: StudyReader) -> NextItem:
    """The reader's next unanswered item in their own order, recording when it was first shown."""
    study = Study.objects.get(pk=assignment.study_id)  # its state now, not when the caller loaded it
    progress = selectors.assignment_progress(assignment=assignment)
    if progress.next_index is None:
        assignment_mark_finished(assignment=assignment)
        return NextItem(done=True, answered=progress.answered, total_all=progress.total_all)
    if study.state != Study.State.OPEN:
        raise StudyNotOpenError(f"study {study.name!r} is {study.get_state_display().lower()}: it takes no answers")
    item = progress.next_item
    presentation = presentation_record(assignment=assignment, item=item)
    return NextItem(
        done=False,
        item=item,
        position=progress.position,
        total=progress.phase_total,
        practice=item.role == StudyItem.Role.PRACTICE,
        shown_at=presentation.shown_at,
        following=progress.following_item,
        answered=progress.answered,
        total_all=progress.total_all,
    )


def presentation_record(*, assignment: StudyReader, item: StudyItem) -> Presentation:
    """Record that `item` is shown to the reader now, unless it was shown before (then keep that time)."""
    existing = Presentation.objects.filter(assignment=assignment, item=item).first()
    if existing is not None:
        return existing
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
    try:
        client_uuid = client_id if isinstance(client_id, uuid.UUID) else uuid.UUID(str(client_id))
    except ValueError as exc:
        raise InvalidAnswerError(f"client_id {client_id!r}: not a UUID") from exc

    stored = _stored_by_client_id(assignment=assignment, item_token=item_token, client_uuid=client_uuid)
    if stored is not None:
        return SubmitResult(response=stored, created=False)

    study = Study.objects.get(pk=assignment.study_id)  # its state now, not when the caller loaded it
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
    item = StudyItem.objects.filter(study=study, token=item_token).first()
    if item is None or item.pk not in assignment.item_order:
        raise ItemNotInStudyError("item: no such item in this study")
    presentation = Presentation.objects.filter(assignment=assignment, item=item).first()
    if presentation is None:
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
                shown_at=presentation.shown_at,
                answered_at=now,
                seconds=max(0.0, (now - presentation.shown_at).total_seconds()),
            )
    except IntegrityError:
        # Either this very request raced with its own retry (same client_id), or the item was
        # answered already (another tab): the database constraint decided which one is kept.
        stored = _stored_by_client_id(assignment=assignment, item_token=item_token, client_uuid=client_uuid)
        if stored is not None:
            return SubmitResult(response=stored, created=False)
        return _response_revise(
            study=study, assignment=assignment, item=item, answer=answer, confidence=confidence,
            client_uuid=client_uuid, now=now,
        )
    assignment_mark_finished(assignment=assignment)
    return SubmitResult(response=response, created=True)


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
