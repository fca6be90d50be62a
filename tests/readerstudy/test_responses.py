"""The answering services called directly: next item, presentations, `response_submit`'s errors,
revision bookkeeping (the answer events), replays after a revision, the page's active reading
time and marking an assignment finished."""
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from readerstudy.models import Presentation, Response, ResponseEvent, Study
from readerstudy.services.responses import (
    AlreadyAnsweredError,
    InvalidAnswerError,
    ItemNotInStudyError,
    ItemNotShownError,
    StudyNotOpenError,
    presentation_record,
    reader_next_item,
    response_submit,
)
from tests.factories import make_study, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def setup_reader(**study_kwargs):
    reader = make_user()
    study = make_study(readers=[reader], **study_kwargs)
    return study, study.assignments.get(user=reader)


def submit(assignment, token, answer="real", confidence=3, client_id=None, **kwargs):
    return response_submit(
        assignment=assignment, item_token=token, answer=answer, confidence=confidence,
        client_id=client_id or uuid.uuid4(), **kwargs,
    )


def test_answering_every_item_in_order_marks_the_assignment_finished():
    study, assignment = setup_reader(n_real=2, n_synthetic=1)
    seen = []
    while not (nxt := reader_next_item(assignment=assignment)).done:
        assert assignment.finished_at is None
        seen.append(nxt.item.pk)
        result = submit(assignment, nxt.item.token)
        assert result.created and result.response.seconds >= 0
    assert seen == assignment.item_order
    assignment.refresh_from_db()
    assert assignment.finished_at is not None
    finished_at = assignment.finished_at
    assert reader_next_item(assignment=assignment).done
    assignment.refresh_from_db()
    assert assignment.finished_at == finished_at  # set once


def test_following_item_is_offered_for_preloading_but_not_recorded_as_shown():
    study, assignment = setup_reader(n_real=2, n_synthetic=1)
    nxt = reader_next_item(assignment=assignment)
    assert nxt.following.pk == assignment.item_order[1]
    assert list(Presentation.objects.values_list("item_id", flat=True)) == [assignment.item_order[0]]


def test_presentation_record_keeps_the_first_time():
    study, assignment = setup_reader(n_real=1, n_synthetic=1)
    item = study.items.first()
    first = presentation_record(assignment=assignment, item=item)
    again = presentation_record(assignment=assignment, item=item)
    assert again.pk == first.pk and again.shown_at == first.shown_at


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"answer": "maybe"}, "answer 'maybe'"),
        ({"confidence": 9}, "off the scale"),
        ({"confidence": True}, "whole number"),
        ({"confidence": 2.5}, "whole number"),
        ({"client_id": "123"}, "not a UUID"),
        ({"active_seconds": -1.0}, "active_seconds"),
        ({"active_seconds": float("nan")}, "active_seconds"),
        ({"active_seconds": "12"}, "active_seconds"),
    ],
)
def test_invalid_answers_raise_a_clear_error(kwargs, message):
    study, assignment = setup_reader(n_real=1, n_synthetic=1)
    token = reader_next_item(assignment=assignment).item.token
    with pytest.raises(InvalidAnswerError, match=message):
        submit(assignment, token, **kwargs)
    assert not Response.objects.exists()


def test_refusals_name_the_rule():
    study, assignment = setup_reader(n_real=2, n_synthetic=1)
    with pytest.raises(ItemNotShownError):
        submit(assignment, study.items.get(pk=assignment.item_order[0]).token)
    with pytest.raises(ItemNotInStudyError):
        submit(assignment, "nope")
    token = reader_next_item(assignment=assignment).item.token
    submit(assignment, token)
    with pytest.raises(AlreadyAnsweredError) as caught:
        submit(assignment, token, answer="synthetic")
    assert caught.value.response.answer == "real"
    Study.objects.filter(pk=study.pk).update(state=Study.State.CLOSED)
    with pytest.raises(StudyNotOpenError, match="closed"):
        submit(assignment, token)
    with pytest.raises(StudyNotOpenError):
        reader_next_item(assignment=assignment)


def test_a_revision_keeps_the_first_reading_time():
    study, assignment = setup_reader(n_real=1, n_synthetic=1, allow_revision=True)
    token = reader_next_item(assignment=assignment).item.token
    first = submit(assignment, token, "real", 1).response
    result = submit(assignment, token, "synthetic", 4)
    assert result.revised and not result.created
    stored = Response.objects.get()
    assert (stored.answer, stored.confidence) == ("synthetic", 4)
    assert stored.seconds == first.seconds and stored.answered_at == first.answered_at
    assert stored.revised_at >= stored.answered_at


def test_replaying_the_first_answer_after_a_revision_changes_nothing():
    """The probe of issue 13: answer A (c1), revise to B (c2), replay c1: B stays."""
    study, assignment = setup_reader(n_real=1, n_synthetic=1, allow_revision=True)
    token = reader_next_item(assignment=assignment).item.token
    c1, c2 = uuid.uuid4(), uuid.uuid4()
    submit(assignment, token, "real", 1, c1)
    assert submit(assignment, token, "synthetic", 5, c2).revised
    for replayed in (c1, c2, c1):
        result = submit(assignment, token, "real", 1, replayed)
        assert not result.created and not result.revised
        assert (result.response.answer, result.response.confidence) == ("synthetic", 5)
    stored = Response.objects.get()
    assert (stored.answer, stored.confidence, stored.client_id) == ("synthetic", 5, c2)
    events = list(ResponseEvent.objects.values_list("kind", "client_id", "answer", "confidence"))
    assert events == [("answer", c1, "real", 1), ("revision", c2, "synthetic", 5)]


def test_every_revision_is_an_event_and_a_refused_one_is_not():
    study, assignment = setup_reader(n_real=1, n_synthetic=1, allow_revision=True)
    token = reader_next_item(assignment=assignment).item.token
    ids = [uuid.uuid4() for _ in range(3)]
    for cid, (answer, confidence) in zip(ids, [("real", 1), ("synthetic", 2), ("real", 4)]):
        submit(assignment, token, answer, confidence, cid)
    assert list(ResponseEvent.objects.values_list("client_id", flat=True)) == ids
    assert [e.kind for e in ResponseEvent.objects.all()] == ["answer", "revision", "revision"]
    fixed_study, fixed = setup_reader(n_real=1, n_synthetic=1)
    fixed_token = reader_next_item(assignment=fixed).item.token
    submit(fixed, fixed_token, "real", 1)
    refused = uuid.uuid4()
    with pytest.raises(AlreadyAnsweredError):
        submit(fixed, fixed_token, "synthetic", 2, refused)
    assert not ResponseEvent.objects.filter(client_id=refused).exists()


def test_a_replay_of_a_row_stored_before_events_existed_is_still_recognised():
    study, assignment = setup_reader(n_real=1, n_synthetic=1, allow_revision=True)
    token = reader_next_item(assignment=assignment).item.token
    cid = uuid.uuid4()
    submit(assignment, token, "real", 2, cid)
    ResponseEvent.objects.all().delete()  # as a row written before migration 0003
    again = submit(assignment, token, "synthetic", 5, cid)
    assert not again.created and not again.revised and again.response.answer == "real"


def test_active_seconds_are_kept_and_capped_by_the_servers_reading_time():
    study, assignment = setup_reader(n_real=2, n_synthetic=1, allow_revision=True)
    token = reader_next_item(assignment=assignment).item.token
    Presentation.objects.update(shown_at=timezone.now() - timedelta(seconds=30))
    first = submit(assignment, token, "real", 2, active_seconds=12.5).response
    assert first.active_seconds == 12.5 and first.seconds >= 30
    assert ResponseEvent.objects.get().active_seconds == 12.5
    submit(assignment, token, "synthetic", 2, active_seconds=1e9)  # a revision with an impossible time
    revision = ResponseEvent.objects.get(kind="revision")
    assert 30 <= revision.active_seconds == revision.seconds < 100
    assert Response.objects.get().active_seconds == 12.5  # the first answer's, as `seconds`
    token = reader_next_item(assignment=assignment).item.token
    assert submit(assignment, token).response.active_seconds is None  # not sent: unknown, not 0
    token = reader_next_item(assignment=assignment).item.token
    capped = submit(assignment, token, active_seconds=3600.0).response
    assert capped.active_seconds == capped.seconds < 5
