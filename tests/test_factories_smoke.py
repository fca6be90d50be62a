"""The shared factories build what the rest of the suite assumes."""
import pytest

from readerstudy.models import StudyItem
from tests.factories import make_study, make_user


@pytest.mark.django_db
def test_make_study_builds_blinded_items_and_reader_orders():
    reader = make_user()
    study = make_study(n_real=3, n_synthetic=2, practice=1, repeats=1, readers=[reader])
    assert study.items.filter(role=StudyItem.Role.MAIN).count() == 5
    assignment = study.assignments.get(user=reader)
    assert sorted(assignment.item_order) == sorted(study.items.values_list("id", flat=True))
    first = study.items.get(pk=assignment.item_order[0])
    assert first.role == StudyItem.Role.PRACTICE
    item = study.items.first()
    assert item.blinded_file.name.endswith(f"{item.token}.png")
