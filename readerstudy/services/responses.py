"""Answering a study: serving a reader's next item and storing their answers.

- `reader_next_item` serves the first unanswered item of the reader's own fixed order and records,
  the first time an item is served, when it was shown (`Presentation.shown_at`, server time);
- `response_submit` stores an answer: idempotent on the page-made `client_id`, one answer per
  reader and item (held by the database, so two tabs keep exactly one), revisions only where the
  study allows them, nothing into a study that is not open, the reading time computed on the
  server (and the page's own "active" reading time, capped by it), and the assignment marked
  finished with its last answer;
- `response_submit_and_next` does both in one request, so that the rating page needs one round
  trip per answer (the answer stored, then the next item served, as a later GET next/ would).

Each is a few indexed queries whatever the study's size (pinned by tests/readerstudy/test_responses_queries.py).

Idempotency survives revision: every accepted answer and revision is a `ResponseEvent` holding its
`client_id`, written in the same transaction as the change it records. A request is a replay when
its `client_id` is any event's (or, for rows stored before events existed, the response's own);
a replay returns the response as it is now and changes nothing, so a flaky network resending the
first answer after a revision cannot undo the revision.

Errors are `ResponseError` subclasses whose `code` names the rule and whose message is for people.
"""
import math
import uuid
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import BigIntegerField, Expression, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from readerstudy import selectors
from readerstudy.models import Presentation, Response, ResponseEvent, Study, StudyItem, StudyReader, Truth
from readerstudy.plain_sql import ModelColumns, column, convert, db_value, fetch_one, insert, insert_with_child, table


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
    # One statement, no transaction around it: shown at the same moment in another tab, the row is
    # not inserted (the first time wins) and is read back.
    created = insert(Presentation(assignment=assignment, item=item, shown_at=timezone.now()), ignore_conflicts=True)
    return created if created is not None else Presentation.objects.get(assignment=assignment, item=item)


def response_submit(
    *, assignment: StudyReader, item_token: str, answer: str, confidence: int, client_id: str | uuid.UUID,
    active_seconds: float | None = None,
) -> SubmitResult:
    """Store the reader's answer to the item with `item_token`.

    A repeat of any earlier accepted request (same `client_id`, even one revised since) returns the
    stored response as it is now, unchanged. A second answer to an answered item (another tab,
    another `client_id`) revises it where the study allows revisions and is refused with
    `AlreadyAnsweredError` otherwise. `active_seconds` is the page's reading time with the clock
    stopped while the tab was hidden; it is kept, capped by the server's own reading time.
    """
    result, _study = _submit(
        assignment=assignment, item_token=item_token, answer=answer, confidence=confidence, client_id=client_id,
        active_seconds=active_seconds,
    )
    if result.created:
        assignment_mark_finished(assignment=assignment)
    return result


def response_submit_and_next(
    *, assignment: StudyReader, item_token: str, answer: str, confidence: int, client_id: str | uuid.UUID,
    active_seconds: float | None = None,
) -> tuple[SubmitResult, NextItem | None]:
    """`response_submit`, then the reader's next item, served (and recorded as shown) at once.

    The next item is None after a practice item: the page shows the feedback first and asks for
    the next item when the reader moves on, so that the reading time starts when it is shown. A
    study left closed answers the stored response and no next item rather than refusing.
    """
    result, study = _submit(
        assignment=assignment, item_token=item_token, answer=answer, confidence=confidence, client_id=client_id,
        active_seconds=active_seconds,
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


def _replayed_response_id(client_uuid: uuid.UUID) -> Expression:
    """The id of the response that accepted `client_id` before (an event's, else a response's own:
    rows stored before events existed), or NULL: two indexed lookups inside the item's query."""
    by_event = ResponseEvent.objects.filter(client_id=client_uuid).values("response_id")[:1]
    by_row = Response.objects.filter(client_id=client_uuid).order_by().values("pk")[:1]
    return Coalesce(Subquery(by_event), Subquery(by_row), output_field=BigIntegerField())


# The item, its study as it is now, when the item was first shown to this reader, and whether this
# client_id was accepted before (an event's, else a response's own: rows stored before events
# existed): one query, in plain SQL (readerstudy.plain_sql says why).
_ITEM = ModelColumns(StudyItem, "i", fields=("id", "study", "token", "role", "truth"))
_STUDY = ModelColumns(Study, "s", fields=("id", "name", "state", "allow_revision", "confidence_min", "confidence_max"))
_SHOWN_AT = (Presentation._meta.get_field("shown_at"),)
_ANSWERED_ITEM_SQL = (
    f"SELECT {_ITEM.sql}, {_STUDY.sql}, "
    f"(SELECT p.{column(Presentation, 'shown_at')} FROM {table(Presentation)} p "
    f"WHERE p.{column(Presentation, 'assignment')} = %s AND p.{column(Presentation, 'item')} = i.{column(StudyItem, 'id')}), "
    f"COALESCE((SELECT e.{column(ResponseEvent, 'response')} FROM {table(ResponseEvent)} e "
    f"WHERE e.{column(ResponseEvent, 'client_id')} = %s LIMIT 1), "
    f"(SELECT r.{column(Response, 'id')} FROM {table(Response)} r WHERE r.{column(Response, 'client_id')} = %s LIMIT 1)) "
    f"FROM {table(StudyItem)} i JOIN {table(Study)} s ON s.{column(Study, 'id')} = i.{column(StudyItem, 'study')} "
    f"WHERE i.{column(StudyItem, 'study')} = %s AND i.{column(StudyItem, 'token')} = %s"
)


def _answered_item(*, assignment: StudyReader, item_token: str, client_uuid: uuid.UUID) -> StudyItem | None:
    """The study's item with `item_token` and its `study`, annotated with `first_shown_at` (to this
    reader) and `replayed_response_id` (see `_replayed_response_id`); None if the study has no such item."""
    client_param = db_value(ResponseEvent, "client_id", client_uuid)
    row = fetch_one(_ANSWERED_ITEM_SQL, [assignment.pk, client_param, client_param, assignment.study_id, item_token])
    if row is None:
        return None
    item = _ITEM.build(row[:_ITEM.width])
    item.study = _STUDY.build(row[_ITEM.width:_ITEM.width + _STUDY.width])
    item.first_shown_at = convert(_SHOWN_AT, [row[-2]])[0]
    item.replayed_response_id = row[-1]
    return item


def _submit(
    *, assignment: StudyReader, item_token: str, answer: str, confidence: int, client_id: str | uuid.UUID,
    active_seconds: float | None,
) -> tuple[SubmitResult, Study | None]:
    """Store the answer; return it with the study as read now (None for a repeat of an unknown item)."""
    try:
        client_uuid = client_id if isinstance(client_id, uuid.UUID) else uuid.UUID(str(client_id))
    except ValueError as exc:
        raise InvalidAnswerError(f"client_id {client_id!r}: not a UUID") from exc

    item = _answered_item(assignment=assignment, item_token=item_token, client_uuid=client_uuid)
    if item is None or item.replayed_response_id is not None:
        stored = _stored_by_client_id(assignment=assignment, item_token=item_token, client_uuid=client_uuid)
        if stored is not None:
            return SubmitResult(response=stored, created=False), (item.study if item is not None else None)

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
    _check_active_seconds(active_seconds)
    if item is None or item.pk not in assignment.item_order:
        raise ItemNotInStudyError("item: no such item in this study")
    if item.first_shown_at is None:
        raise ItemNotShownError("item: this item has not been shown yet; answer the items in the order served")

    now = timezone.now()
    seconds = max(0.0, (now - item.first_shown_at).total_seconds())
    active = _capped(active_seconds, seconds)
    try:
        # The response and its answer event, all or nothing (one statement on PostgreSQL).
        response = Response(
            assignment=assignment,
            item=item,
            answer=answer,
            confidence=confidence,
            client_id=client_uuid,
            shown_at=item.first_shown_at,
            answered_at=now,
            seconds=seconds,
            active_seconds=active,
        )
        event = _event(response=response, kind=ResponseEvent.Kind.ANSWER, client_uuid=client_uuid,
                       seconds=seconds, active_seconds=active, now=now)
        insert_with_child(response, event, fk="response")
    except IntegrityError:
        # Either this very request raced with its own retry (same client_id), or the item was
        # answered already (another tab): the database constraint decided which one is kept.
        stored = _stored_by_client_id(assignment=assignment, item_token=item_token, client_uuid=client_uuid)
        if stored is not None:
            return SubmitResult(response=stored, created=False), study
        revised = _response_revise(
            study=study, assignment=assignment, item=item, answer=answer, confidence=confidence,
            client_uuid=client_uuid, now=now, active_seconds=active_seconds,
        )
        return revised, study
    return SubmitResult(response=response, created=True), study


def _check_active_seconds(active_seconds: float | None) -> None:
    if active_seconds is None:
        return
    if isinstance(active_seconds, bool) or not isinstance(active_seconds, (int, float)):
        raise InvalidAnswerError(f"active_seconds {active_seconds!r}: expected a number of seconds")
    if not math.isfinite(active_seconds) or active_seconds < 0:
        raise InvalidAnswerError(f"active_seconds {active_seconds!r}: expected a finite number of seconds, 0 or more")


def _capped(active_seconds: float | None, seconds: float) -> float | None:
    """The page's active reading time, never more than the server's (the page cannot have looked
    longer than the item was shown: a larger value is a wrong clock or a forged request)."""
    if active_seconds is None:
        return None
    return min(float(active_seconds), seconds)


def _event(
    *, response: Response, kind: str, client_uuid: uuid.UUID, seconds: float, active_seconds: float | None, now,
) -> ResponseEvent:
    """The (unsaved) event recording that `response` took its current answer from `client_uuid`."""
    return ResponseEvent(
        response=response, kind=kind, client_id=client_uuid, answer=response.answer,
        confidence=response.confidence, seconds=seconds, active_seconds=active_seconds, created_at=now,
    )


def _stored_by_client_id(*, assignment: StudyReader, item_token: str, client_uuid: uuid.UUID) -> Response | None:
    """The response that accepted `client_uuid` before, as it is now; None if the id is new.

    Raises `ClientIdConflictError` when the id was accepted for another reader or item.
    """
    stored = Response.objects.filter(pk=_replayed_response_id(client_uuid)).select_related("item").first()
    if stored is None:
        return None
    if stored.assignment_id != assignment.pk or stored.item.token != item_token:
        raise ClientIdConflictError("client_id: already used for another answer; make a new one per answer")
    return stored


class _ReplayFound(Exception):
    """Raised inside the revision's transaction to roll it back when its client_id was taken meanwhile."""


def _response_revise(
    *, study: Study, assignment: StudyReader, item: StudyItem, answer: str, confidence: int,
    client_uuid: uuid.UUID, now, active_seconds: float | None,
) -> SubmitResult:
    try:
        with transaction.atomic():
            existing = Response.objects.select_for_update().get(assignment=assignment, item=item)
            if not study.allow_revision:
                raise AlreadyAnsweredError(
                    "item: answered already (perhaps in another tab); this study does not allow changing answers",
                    response=existing,
                )
            # Checked again under the row lock: a retry of this very revision may have committed
            # while this request waited for the lock; it is then a replay, not a second revision.
            stored = _stored_by_client_id(assignment=assignment, item_token=item.token, client_uuid=client_uuid)
            if stored is not None:
                return SubmitResult(response=stored, created=False)
            existing.answer = answer
            existing.confidence = confidence
            # The newest accepted request's id (every earlier one is kept by its event).
            existing.client_id = client_uuid
            existing.revised_at = now
            since_shown = max(0.0, (now - existing.shown_at).total_seconds()) if existing.shown_at else 0.0
            try:
                with transaction.atomic():
                    existing.save(update_fields=["answer", "confidence", "client_id", "revised_at"])
                    insert(_event(response=existing, kind=ResponseEvent.Kind.REVISION, client_uuid=client_uuid,
                                  seconds=since_shown, active_seconds=_capped(active_seconds, since_shown), now=now))
            except IntegrityError as exc:  # the id was taken by another request meanwhile
                raise _ReplayFound from exc
    except _ReplayFound:
        stored = _stored_by_client_id(assignment=assignment, item_token=item.token, client_uuid=client_uuid)
        if stored is None:  # taken and gone again (deleted meanwhile): ask for a fresh id
            raise ClientIdConflictError("client_id: already used for another answer; make a new one per answer")
        return SubmitResult(response=stored, created=False)
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
