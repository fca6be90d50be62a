"""Reads of reader-study data, shaped for pages, the API, statistics and exports."""
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, F, IntegerField, Q, QuerySet, Value
from django.urls import reverse

from readerstudy.models import Presentation, Response, Study, StudyItem, StudyReader

# The states in which a study is visible to its readers (a draft is not).
READER_VISIBLE_STATES = (Study.State.OPEN, Study.State.CLOSED)


def studies_for_reader(*, user: AbstractBaseUser) -> QuerySet[StudyReader]:
    """The open or closed studies assigned to `user`, with the number of answers given."""
    return (
        StudyReader.objects.filter(user=user, study__state__in=[Study.State.OPEN, Study.State.CLOSED])
        .select_related("study")
        .annotate(answered=Count("responses", distinct=True))
        .order_by("-study__created_at")
    )


def reader_assignment_get(*, user: AbstractBaseUser, study_id: int) -> StudyReader | None:
    """`user`'s assignment to the open or closed study `study_id`, or None (not assigned, draft, absent)."""
    if not user.is_authenticated:
        return None
    return (
        StudyReader.objects.filter(user=user, study_id=study_id, study__state__in=READER_VISIBLE_STATES)
        .select_related("study")
        # Staff-only JSON, possibly large, that no reader page or answer needs: not decoded per request.
        .defer("study__confound_audit", "study__provenance")
        .first()
    )


@dataclass(frozen=True)
class AssignmentProgress:
    """Where a reader stands in their own order of items."""

    answered: int
    total_all: int
    # Index in `item_order` of the first unanswered item; None when all are answered.
    next_index: int | None
    next_item: StudyItem | None
    following_item: StudyItem | None
    # 1-based place of the next item within its phase (practice first, then the study proper).
    position: int
    phase_total: int
    practice_total: int
    # When the next item was first shown to this reader; None if it has not been shown yet.
    next_shown_at: object = None


def assignment_progress(*, assignment: StudyReader) -> AssignmentProgress:
    """The reader's progress and next item, following their own fixed `item_order`.

    Two queries whatever the study's size: the reader's answered and shown items together (one
    UNION of id/time pairs), then the next and following items with the study's practice items (the
    only ones whose role matters for the count), so no request loads every item of a large study.
    """
    order = list(assignment.item_order)
    answered_ids: set[int] = set()
    shown_at: dict[int, object] = {}
    for item_id, answered, at in _answered_and_shown(assignment=assignment):
        if answered:
            answered_ids.add(item_id)
        else:
            shown_at[item_id] = at
    next_index = next((i for i, pk in enumerate(order) if pk not in answered_ids), None)
    answered = sum(1 for pk in order if pk in answered_ids)
    wanted = order[next_index:next_index + 2] if next_index is not None else []
    # Only what a reader may see of an item is loaded: its token and role.
    # (No ordering: StudyItem's default one would join the study table for nothing.)
    items = {
        item.pk: item
        for item in StudyItem.objects.filter(
            Q(pk__in=wanted) | Q(study_id=assignment.study_id, role=StudyItem.Role.PRACTICE)
        ).only("id", "study_id", "token", "role").order_by()
    }
    practice_ids = {pk for pk, item in items.items() if item.role == StudyItem.Role.PRACTICE}
    practice_total = sum(1 for pk in order if pk in practice_ids)
    if next_index is None:
        return AssignmentProgress(answered, len(order), None, None, None, 0, 0, practice_total)
    next_item = items[order[next_index]]
    following = items.get(order[next_index + 1]) if next_index + 1 < len(order) else None
    before = order[:next_index]
    if next_item.pk in practice_ids:
        position = sum(1 for pk in before if pk in practice_ids) + 1
        phase_total = practice_total
    else:
        position = sum(1 for pk in before if pk not in practice_ids) + 1
        phase_total = len(order) - practice_total
    return AssignmentProgress(
        answered, len(order), next_index, next_item, following, position, phase_total, practice_total,
        next_shown_at=shown_at.get(next_item.pk),
    )


def _answered_and_shown(*, assignment: StudyReader):
    """(item_id, answered, time) rows: one per answer (answered=1) and one per presentation (0)."""
    answers = Response.objects.filter(assignment=assignment).annotate(
        answered=Value(1, output_field=IntegerField()), at=F("answered_at")
    ).order_by().values_list("item_id", "answered", "at")
    shown = Presentation.objects.filter(assignment=assignment).annotate(
        answered=Value(0, output_field=IntegerField()), at=F("shown_at")
    ).order_by().values_list("item_id", "answered", "at")
    return answers.union(shown, all=True)


def reader_study_summaries(*, user: AbstractBaseUser) -> list[dict]:
    """The studies assigned to `user` with progress, for the home page and the reader API."""
    rows = []
    for assignment in studies_for_reader(user=user):
        total = len(assignment.item_order)
        answered = assignment.answered
        rows.append(
            {
                "assignment": assignment,
                "study": assignment.study,
                "answered": answered,
                "total": total,
                "finished": assignment.finished_at is not None or (total > 0 and answered >= total),
            }
        )
    return rows


def item_image_visible_to(*, user: AbstractBaseUser, token: str) -> StudyItem | None:
    """The study item with `token` if `user` may see its image: staff, or a reader assigned to its
    open or closed study with the item in their order; None otherwise (the caller answers 404).

    One indexed query (the token is unique), joining the reader's assignment; only the item's id,
    study and blinded file are loaded.
    """
    if not user.is_authenticated:
        return None
    items = StudyItem.objects.filter(token=token).only("id", "study_id", "blinded_file")
    if user.is_staff:
        return items.first()
    item = (
        items.filter(study__state__in=READER_VISIBLE_STATES, study__assignments__user=user)
        .annotate(reader_order=F("study__assignments__item_order"))
        .first()
    )
    if item is None or item.pk not in (item.reader_order or []):
        return None
    return item


def study_confidence_scale(*, study: Study) -> list[dict]:
    """The study's confidence levels, lowest first: `value`, `label` (may be empty) and `key`,
    the keyboard digit that picks it on the rating page (None beyond 9 levels)."""
    values = range(study.confidence_min, study.confidence_max + 1)
    labels = list(study.confidence_labels or [])
    if len(labels) != len(values):
        labels = [""] * len(values)
    return [
        {"value": v, "label": label, "key": str(n) if n <= 9 else None}
        for n, (v, label) in enumerate(zip(values, labels), start=1)
    ]


def rating_page_config(*, study: Study) -> dict:
    """What the rating page's script needs: the API addresses, the scale and the study's viewer and
    break settings (one microns-per-pixel value for the whole study). Names no item."""
    return {
        "flag_url": reverse("reader-api-flag", kwargs={"study_id": study.pk, "token": "__token__"}),
        "microns_per_pixel": study.microns_per_pixel,
        "break_every": study.break_every,
        "next_url": reverse("reader-api-next", kwargs={"study_id": study.pk}),
        "responses_url": reverse("reader-api-responses", kwargs={"study_id": study.pk}),
        "finish_url": reverse("study-finish", kwargs={"study_id": study.pk}),
        "allow_revision": study.allow_revision,
        "scale": study_confidence_scale(study=study),
    }


def item_flag_get(*, assignment: StudyReader, item: StudyItem):
    """This reader's flag (`ItemFlag`) on `item`, or None."""
    return assignment.flags.filter(item=item).first()


@dataclass(frozen=True)
class ReaderProgress:
    """One reader's progress in a study, for the staff's study page."""

    assignment: StudyReader
    label: str  # "Study name · R01": pseudonyms are numbered per study, so always shown with it
    answered: int
    total: int
    last_activity: object  # the latest answer, revision or first showing of an image; None before any
    flags: int

    @property
    def percent(self) -> int:
        return round(100 * self.answered / self.total) if self.total else 0


def reader_label(*, assignment: StudyReader) -> str:
    """A reader as staff see them in lists: the study's name and the pseudonym ("Study X · R01")."""
    return f"{assignment.study.name} · {assignment.pseudonym}"


def study_reader_progress(*, study: Study) -> list[ReaderProgress]:
    """Every reader of `study` in pseudonym order with answered/total, last activity and flags (4 queries)."""
    from django.db.models import Max

    from readerstudy.models import ItemFlag

    assignments = list(study.assignments.select_related("user", "study").order_by("pseudonym"))
    answers = {
        row["assignment"]: row
        for row in Response.objects.filter(assignment__study=study).order_by().values("assignment")
        .annotate(n=Count("id"), last=Max("answered_at"), last_revised=Max("revised_at"))
    }
    shown = dict(
        Presentation.objects.filter(assignment__study=study).order_by().values("assignment")
        .annotate(last=Max("shown_at")).values_list("assignment", "last")
    )
    flags = dict(
        ItemFlag.objects.filter(assignment__study=study).order_by().values("assignment")
        .annotate(n=Count("id")).values_list("assignment", "n")
    )
    rows = []
    for a in assignments:
        row = answers.get(a.pk, {})
        times = [t for t in (row.get("last"), row.get("last_revised"), shown.get(a.pk)) if t is not None]
        rows.append(ReaderProgress(
            assignment=a, label=reader_label(assignment=a), answered=row.get("n", 0), total=len(a.item_order),
            last_activity=max(times) if times else None, flags=flags.get(a.pk, 0),
        ))
    return rows
