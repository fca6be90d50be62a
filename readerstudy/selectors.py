"""Reads of reader-study data, shaped for pages, the API, statistics and exports."""
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, QuerySet
from django.urls import reverse

from readerstudy.models import Presentation, Response, Study, StudyItem, StudyReader
from readerstudy.plain_sql import ModelColumns, column, convert, fetch_all, fetch_one, table

# The states in which a study is visible to its readers (a draft is not).
READER_VISIBLE_STATES = (Study.State.OPEN, Study.State.CLOSED)
_VISIBLE_STATE_VALUES = [str(state) for state in READER_VISIBLE_STATES]  # plain-SQL parameters


def studies_for_reader(*, user: AbstractBaseUser) -> QuerySet[StudyReader]:
    """The open or closed studies assigned to `user`, with the number of answers given."""
    return (
        StudyReader.objects.filter(user=user, study__state__in=[Study.State.OPEN, Study.State.CLOSED])
        .select_related("study")
        .annotate(answered=Count("responses", distinct=True))
        .order_by("-study__created_at")
    )


# The reader's answer path reads in plain SQL (readerstudy.plain_sql says why): these are its queries.
_STUDY_FOR_READER = ModelColumns(Study, "s", exclude=("confound_audit", "provenance"))  # staff-only JSON
_ASSIGNMENT = ModelColumns(StudyReader, "a")
_ASSIGNMENT_SQL = (
    f"SELECT {_ASSIGNMENT.sql}, {_STUDY_FOR_READER.sql} FROM {table(StudyReader)} a "
    f"JOIN {table(Study)} s ON s.{column(Study, 'id')} = a.{column(StudyReader, 'study')} "
    f"WHERE a.{column(StudyReader, 'user')} = %s AND a.{column(StudyReader, 'study')} = %s "
    f"AND s.{column(Study, 'state')} IN (%s, %s)"
)


def reader_assignment_get(*, user: AbstractBaseUser, study_id: int) -> StudyReader | None:
    """`user`'s assignment to the open or closed study `study_id`, or None (not assigned, draft, absent).

    One query; the study comes with it (all but its staff-only JSON, which no reader page needs)."""
    if not user.is_authenticated:
        return None
    row = fetch_one(_ASSIGNMENT_SQL, [user.pk, study_id, *_VISIBLE_STATE_VALUES])
    if row is None:
        return None
    assignment = _ASSIGNMENT.build(row[:_ASSIGNMENT.width])
    assignment.study = _STUDY_FOR_READER.build(row[_ASSIGNMENT.width:])
    return assignment


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
    items = {item.pk: item for item in _next_and_practice_items(assignment=assignment, wanted=wanted)}
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
        next_shown_at=convert(_SHOWN_AT, [shown_at.get(next_item.pk)])[0],  # read as stored: converted here
    )


_PROGRESS_SQL = (
    f"SELECT {column(Response, 'item')}, 1, {column(Response, 'answered_at')} FROM {table(Response)} "
    f"WHERE {column(Response, 'assignment')} = %s UNION ALL "
    f"SELECT {column(Presentation, 'item')}, 0, {column(Presentation, 'shown_at')} FROM {table(Presentation)} "
    f"WHERE {column(Presentation, 'assignment')} = %s"
)
_SHOWN_AT = (Presentation._meta.get_field("shown_at"),)


def _answered_and_shown(*, assignment: StudyReader) -> list[tuple]:
    """(item_id, answered, time) rows: one per answer (answered=1) and one per presentation (0), the
    time as the database gives it (only the next item's is needed: the caller converts that one)."""
    return fetch_all(_PROGRESS_SQL, [assignment.pk, assignment.pk])


_READER_ITEM = ModelColumns(StudyItem, "i", fields=("id", "study", "token", "role"))


def _next_and_practice_items(*, assignment: StudyReader, wanted: list[int]) -> list[StudyItem]:
    """The items with ids `wanted`, and the study's practice items: only what a reader may see of
    them (token and role)."""
    by_id = f"i.{column(StudyItem, 'id')} IN ({', '.join(['%s'] * len(wanted))}) OR " if wanted else ""
    sql = (
        f"SELECT {_READER_ITEM.sql} FROM {table(StudyItem)} i WHERE {by_id}"
        f"(i.{column(StudyItem, 'study')} = %s AND i.{column(StudyItem, 'role')} = %s)"
    )
    rows = fetch_all(sql, [*wanted, assignment.study_id, str(StudyItem.Role.PRACTICE)])
    return [_READER_ITEM.build(row) for row in rows]


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


_IMAGE_ITEM = ModelColumns(StudyItem, "i", fields=("id", "study", "blinded_file"))
_ITEM_ORDER = (StudyReader._meta.get_field("item_order"),)
_IMAGE_SQL = (
    f"SELECT {_IMAGE_ITEM.sql}, a.{column(StudyReader, 'item_order')} FROM {table(StudyItem)} i "
    f"JOIN {table(Study)} s ON s.{column(Study, 'id')} = i.{column(StudyItem, 'study')} "
    f"JOIN {table(StudyReader)} a ON a.{column(StudyReader, 'study')} = i.{column(StudyItem, 'study')} "
    f"AND a.{column(StudyReader, 'user')} = %s "
    f"WHERE i.{column(StudyItem, 'token')} = %s AND s.{column(Study, 'state')} IN (%s, %s)"
)


def item_image_visible_to(*, user: AbstractBaseUser, token: str) -> StudyItem | None:
    """The study item with `token` if `user` may see its image: staff, or a reader assigned to its
    open or closed study with the item in their order; None otherwise (the caller answers 404).

    One indexed query (the token is unique), joining the reader's assignment; only the item's id,
    study and blinded file are loaded.
    """
    if not user.is_authenticated:
        return None
    if user.is_staff:
        return StudyItem.objects.filter(token=token).only("id", "study_id", "blinded_file").first()
    row = fetch_one(_IMAGE_SQL, [user.pk, token, *_VISIBLE_STATE_VALUES])
    if row is None:
        return None
    item = _IMAGE_ITEM.build(row[:_IMAGE_ITEM.width])
    if item.pk not in (convert(_ITEM_ORDER, row[_IMAGE_ITEM.width:])[0] or []):
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
