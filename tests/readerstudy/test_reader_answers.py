"""Removing one reader's answers: that reader's answers, answer events and first-shown times go, in one
transaction, and nothing of anyone else's; the reader can start again."""
import pytest

from readerstudy.models import ItemFlag, Presentation, Response, ResponseEvent
from readerstudy.selectors import assignment_progress, study_reader_progress
from readerstudy.services.reader_answers import study_reader_answers_remove
from tests.factories import answer_items, make_study, make_user


@pytest.mark.django_db
def test_removing_answers_resets_one_reader_only():
    alice, bob = make_user("alice"), make_user("bob")
    study = make_study(readers=[alice, bob], practice=1)
    mine, theirs = study.assignments.get(user=alice), study.assignments.get(user=bob)
    answer_items(mine, share=0.5)
    answer_items(theirs)
    ItemFlag.objects.create(assignment=mine, item_id=mine.item_order[0])
    n_mine = Response.objects.filter(assignment=mine).count()
    n_events = ResponseEvent.objects.filter(response__assignment=mine).count()  # as the answer service keeps them
    removed = study_reader_answers_remove(assignment=mine)
    assert (removed.responses, removed.events, removed.presentations) == (n_mine, n_events, n_mine) and n_mine > 0
    assert not Response.objects.filter(assignment=mine).exists()
    assert not ResponseEvent.objects.filter(response__assignment=mine).exists()
    assert not Presentation.objects.filter(assignment=mine).exists()
    assert ItemFlag.objects.filter(assignment=mine).count() == 1
    assert Response.objects.filter(assignment=theirs).count() == len(theirs.item_order)
    progress = assignment_progress(assignment=mine)
    assert progress.answered == 0 and progress.next_index == 0  # starts again from the first image
    rows = {r.assignment.pk: r for r in study_reader_progress(study=study)}
    assert rows[mine.pk].answered == 0 and rows[mine.pk].last_activity is None and rows[mine.pk].flags == 1
    assert rows[theirs.pk].answered == rows[theirs.pk].total
