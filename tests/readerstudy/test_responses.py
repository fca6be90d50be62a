"""The answering services called directly: next item, presentations, `response_submit`'s errors,
revision bookkeeping and marking an assignment finished."""
import uuid

import pytest

from readerstudy.models import Presentation, Response, Study
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


def submit(assignment, token, answer="real", confidence=3, client_id=None):
    return response_submit(
        assignment=assignment, item_token=token, answer=answer, confidence=confidence,
        client_id=client_id or uuid.uuid4(),
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
