"""The answer path's plain-SQL reads and inserts (readerstudy.plain_sql) give what the ORM gives:
the same field values and types (aware datetimes, decoded JSON), deferred fields loaded on access,
and a conflicting insert ignored when asked, refused otherwise."""
import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from readerstudy import selectors
from readerstudy.models import Presentation, Study, StudyReader
from readerstudy.plain_sql import insert
from tests.factories import make_study, make_user

pytestmark = pytest.mark.django_db


def test_the_assignment_and_its_study_read_in_plain_sql_are_the_orm_ones():
    reader = make_user()
    study = make_study(n_real=2, n_synthetic=2, readers=[reader], allow_revision=True, practice=1)
    Study.objects.filter(pk=study.pk).update(microns_per_pixel=0.5)
    got = selectors.reader_assignment_get(user=reader, study_id=study.pk)
    expected = StudyReader.objects.select_related("study").get(user=reader, study=study)
    for field in StudyReader._meta.concrete_fields:
        assert getattr(got, field.attname) == getattr(expected, field.attname), field.name
    assert isinstance(got.item_order, list) and got.assigned_at.tzinfo is not None
    for field in Study._meta.concrete_fields:
        if field.name in ("confound_audit", "provenance"):
            continue
        assert getattr(got.study, field.attname) == getattr(expected.study, field.attname), field.name
    assert got.study.confidence_labels == expected.study.confidence_labels
    # The staff-only JSON is deferred, not lost: read on access.
    assert got.study.provenance == expected.study.provenance


def test_no_assignment_for_a_draft_study_a_stranger_or_an_unknown_study():
    reader, stranger = make_user(), make_user()
    draft = make_study(n_real=1, n_synthetic=1, readers=[reader], state=Study.State.DRAFT)
    opened = make_study(n_real=1, n_synthetic=1, readers=[reader])
    assert selectors.reader_assignment_get(user=reader, study_id=draft.pk) is None
    assert selectors.reader_assignment_get(user=stranger, study_id=opened.pk) is None
    assert selectors.reader_assignment_get(user=reader, study_id=opened.pk + 1000) is None


def test_the_first_showing_read_back_is_the_stored_aware_time():
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    assignment = StudyReader.objects.get(user=reader)
    item = study.items.get(pk=assignment.item_order[0])
    shown = insert(Presentation(assignment=assignment, item=item, shown_at=timezone.now()))
    progress = selectors.assignment_progress(assignment=assignment)
    assert progress.next_item.pk == item.pk and progress.next_shown_at == shown.shown_at
    assert progress.next_shown_at.tzinfo is not None


def test_a_conflicting_insert_is_ignored_when_asked_and_refused_otherwise():
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    assignment = StudyReader.objects.get(user=reader)
    item = study.items.first()
    first = insert(Presentation(assignment=assignment, item=item, shown_at=timezone.now()))
    assert first.pk == Presentation.objects.get().pk
    assert insert(Presentation(assignment=assignment, item=item, shown_at=timezone.now()), ignore_conflicts=True) is None
    with pytest.raises(IntegrityError), transaction.atomic():
        insert(Presentation(assignment=assignment, item=item, shown_at=timezone.now()))
    assert Presentation.objects.get().shown_at == first.shown_at
