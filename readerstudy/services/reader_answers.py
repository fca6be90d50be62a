"""Removing one reader's answers from a study, so that the reader can start again from the first image.

Staff use it for a reader who misunderstood the task or rated on a broken screen. Everything that
timed or recorded the reader's answers goes (answers, their revision trail, the first-shown times)
and the assignment is no longer finished; the reader's fixed order of items and pseudonym stay, and
so do their image flags (remarks about the images, not answers). The audit entry is the admin's.
"""
from dataclasses import dataclass

from django.db import transaction

from readerstudy.models import Presentation, Response, ResponseEvent, StudyReader


@dataclass(frozen=True)
class RemovedAnswers:
    responses: int
    events: int
    presentations: int

    def describe(self) -> str:
        return (f"{self.responses} answer(s), {self.events} answer event(s) and "
                f"{self.presentations} first-shown time(s)")


def study_reader_answers_remove(*, assignment: StudyReader) -> RemovedAnswers:
    """Delete the reader's answers in this study (all or nothing) and say how many rows went."""
    with transaction.atomic():
        assignment = StudyReader.objects.select_for_update().get(pk=assignment.pk)
        events = ResponseEvent.objects.filter(response__assignment=assignment).count()
        responses = Response.objects.filter(assignment=assignment).delete()[1].get(Response._meta.label, 0)
        presentations = Presentation.objects.filter(assignment=assignment).delete()[0]
        StudyReader.objects.filter(pk=assignment.pk).update(finished_at=None)
    return RemovedAnswers(responses=responses, events=events, presentations=presentations)
