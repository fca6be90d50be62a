"""Reads of reader-study data, shaped for pages, the API, statistics and exports."""
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet

from readerstudy.models import Study, StudyReader


def studies_for_reader(*, user: AbstractBaseUser) -> QuerySet[StudyReader]:
    """The open or closed studies assigned to `user`, with the number of answers given."""
    return (
        StudyReader.objects.filter(user=user, study__state__in=[Study.State.OPEN, Study.State.CLOSED])
        .select_related("study")
        .annotate(answered=Count("responses", distinct=True))
        .order_by("-study__created_at")
    )
