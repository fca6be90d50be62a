"""Assigning readers: own fixed random order, pseudonyms, and the assign_readers command."""
import io

import pytest
from django.core.management import CommandError, call_command

from readerstudy.models import StudyItem, StudyReader
from readerstudy.services.studies import study_assign_readers
from tests.factories import make_study, make_user


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.mark.django_db
def test_each_reader_gets_an_own_fixed_order_with_practice_first():
    study = make_study(n_real=6, n_synthetic=6, practice=2, repeats=2)
    alice, bob = make_user("alice"), make_user("bob")
    a, b = study_assign_readers(study=study, users=[alice, bob])
    assert (a.pseudonym, b.pseudonym) == ("R01", "R02")
    all_ids = set(study.items.values_list("id", flat=True))
    practice = set(study.items.filter(role=StudyItem.Role.PRACTICE).values_list("id", flat=True))
    for assignment in (a, b):
        assert sorted(assignment.item_order) == sorted(all_ids)
        assert set(assignment.item_order[:2]) == practice
    assert a.item_order != b.item_order
    # Assigning again keeps the order (a reader who leaves resumes where they stopped).
    again = study_assign_readers(study=study, users=[alice])[0]
    assert again.pk == a.pk and again.item_order == a.item_order
    assert StudyReader.objects.filter(study=study).count() == 2


@pytest.mark.django_db
def test_pseudonyms_continue_after_a_removed_reader():
    study = make_study()
    users = [make_user() for _ in range(3)]
    study_assign_readers(study=study, users=users)
    StudyReader.objects.get(study=study, pseudonym="R02").delete()
    new = study_assign_readers(study=study, users=[make_user()])[0]
    assert new.pseudonym == "R04"


@pytest.mark.django_db
def test_assign_readers_command():
    study = make_study(name="Glioma 1")
    make_user("carol"), make_user("dave")
    out = io.StringIO()
    call_command("assign_readers", "Glioma 1", "carol", "dave", stdout=out)
    assert set(study.assignments.values_list("user__username", flat=True)) == {"carol", "dave"}
    assert "carol: R01 in 'Glioma 1'" in out.getvalue()
    with pytest.raises(CommandError, match="no such user\\(s\\): erin, frank; nobody was assigned"):
        call_command("assign_readers", "Glioma 1", "carol", "erin", "frank")
    with pytest.raises(CommandError, match="no study named 'Nope'"):
        call_command("assign_readers", "Nope", "carol")
    call_command("assign_readers", str(study.pk), "carol", stdout=io.StringIO())  # by id, idempotent
    assert study.assignments.count() == 2


@pytest.mark.django_db
def test_assigning_a_group_is_all_or_nothing(monkeypatch):
    from readerstudy.services import studies
    from readerstudy.services.studies import StudyError

    study = make_study()
    first, second = make_user("first"), make_user("second")
    # Every pseudonym number comes out as R01: the second reader can never be given one.
    monkeypatch.setattr(studies, "_next_pseudonym_number", lambda *, study: 1)
    with pytest.raises(StudyError, match="could not assign second"):
        study_assign_readers(study=study, users=[first, second])
    assert not StudyReader.objects.filter(study=study).exists()  # the first one is not kept either
    monkeypatch.undo()
    assert [a.pseudonym for a in study_assign_readers(study=study, users=[first, second])] == ["R01", "R02"]
