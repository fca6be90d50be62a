"""Re-blinding an existing study: its blinded files re-encoded from the sources with today's blinding.

Studies made before blinded files had one fixed length keep their compressed PNGs (a size channel);
`study_reblind` rewrites every item's file from its source image, at the study's size and with its
harmonisation, in one transaction and staging session: the rows point at the new files once it
commits, the old files are removed after the commit, and on any error nothing changes. Tokens,
item ids and answers are untouched. The confound audit is run again.
"""
from django.core.files.base import ContentFile
from django.db import transaction

from readerstudy.models import Study
from readerstudy.services.audit import study_confound_audit
from readerstudy.services.blinding import BLINDED_SUFFIX, BlindingError, blind_image_bytes, blinding_record
from readerstudy.services.studies import StudyError
from readerstudy.staging import staged_writes


def study_reblind(*, study: Study) -> Study:
    """Rewrite every blinded file of `study` (see the module); returns the study."""
    items = list(study.items.select_related("image").order_by("id"))
    if not items:
        raise StudyError(f"study {study.name!r} has no items to re-blind")
    size = tuple(study.provenance.get("blinded_size") or (items[0].image.width, items[0].image.height))
    old_names = [item.blinded_file.name for item in items]
    with staged_writes(), transaction.atomic():
        for item in items:
            with item.image.file.open("rb") as fh:
                try:
                    data = blind_image_bytes(data=fh.read(), size=size, harmonisation=study.harmonisation)
                except BlindingError as exc:
                    raise StudyError(f"image {item.image}: {exc}") from exc
            # A new name (the token and a random suffix): the old file stays valid until the commit.
            item.blinded_file.save(f"{item.token}{BLINDED_SUFFIX}", ContentFile(data), save=False)
            item.save(update_fields=["blinded_file"])
        study.provenance = {**study.provenance, "blinded_size": list(size), **blinding_record(items, size),
                            "reblinded": True}
        study.save(update_fields=["provenance"])
        study_confound_audit(study=study)
        storage = items[0].blinded_file.storage
        transaction.on_commit(lambda: [storage.delete(name) for name in old_names if name])
    return study
