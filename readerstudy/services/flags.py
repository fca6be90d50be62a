"""Flags: a reader marks an image as problematic ("something is wrong with this image"), with an
optional comment, for staff to look at. A flag never touches the reader's answer.

- `item_flag_set` creates or updates the reader's flag on an item (one per reader and item);
- `item_flag_clear` removes it.

A reader may flag only an item of their own order that has already been shown to them, and only
while the study is open. Every refusal raises `FlagError` with the same message for "no such item"
and "not yours / not shown yet", so that a refusal does not reveal whether a token exists.
"""
from django.db import IntegrityError, transaction

from readerstudy.models import ItemFlag, Presentation, Study, StudyItem, StudyReader
from readerstudy.services.responses import ItemNotInStudyError, ResponseError, StudyNotOpenError

COMMENT_MAX = ItemFlag._meta.get_field("comment").max_length


# A flag is refused by the same rules, with the same codes, as an answer.
FlagError = ResponseError
FlagItemUnknownError = ItemNotInStudyError
FlagStudyNotOpenError = StudyNotOpenError


def flaggable_item(*, assignment: StudyReader, item_token: str) -> StudyItem:
    """The item with `item_token` if this reader may flag it now; `FlagError` otherwise."""
    study = Study.objects.only("id", "name", "state").get(pk=assignment.study_id)
    if study.state != Study.State.OPEN:
        raise FlagStudyNotOpenError(f"study {study.name!r} is {study.get_state_display().lower()}: it takes no flags")
    item = StudyItem.objects.filter(study_id=assignment.study_id, token=item_token).only("id", "token").first()
    shown = item is not None and Presentation.objects.filter(assignment=assignment, item=item).exists()
    if item is None or item.pk not in assignment.item_order or not shown:
        raise FlagItemUnknownError("item: no such item shown to you in this study")
    return item


def item_flag_set(*, assignment: StudyReader, item: StudyItem, comment: str = "") -> ItemFlag:
    """Flag `item` for this reader with `comment` (may be empty); a second call replaces the comment."""
    comment = (comment or "").strip()
    if len(comment) > COMMENT_MAX:
        raise FlagError(f"comment: at most {COMMENT_MAX} characters (got {len(comment)})")
    try:
        with transaction.atomic():
            flag, created = ItemFlag.objects.get_or_create(
                assignment=assignment, item=item, defaults={"comment": comment}
            )
    except IntegrityError:  # flagged at the same moment in another tab: update that one
        flag, created = ItemFlag.objects.get(assignment=assignment, item=item), False
    if not created and flag.comment != comment:
        flag.comment = comment
        flag.save(update_fields=["comment", "updated_at"])
    return flag


def item_flag_clear(*, assignment: StudyReader, item: StudyItem) -> bool:
    """Remove this reader's flag on `item`; True when there was one."""
    deleted, _ = ItemFlag.objects.filter(assignment=assignment, item=item).delete()
    return deleted > 0
