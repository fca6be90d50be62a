"""The confound audit of a study (Django side): measure its source images, store the verdict on the study.

Run when a study is built or uploaded (and again by `study_confound_audit` at any time). The
features and the classifier are in `readerstudy.confounds`; here the study's main images are read
per arm (`StudyItem.generator`), after the study's harmonisation when it has one (what the
harmonisation makes of a source is what its blinded file is made from), and the result is kept
in `Study.confound_audit`, shown on the study's admin page and in the results' `meta` table.
"""
import pandas as pd
from django.utils import timezone

from readerstudy import confounds
from readerstudy.models import Study, StudyItem
from readerstudy.services.blinding import decode_srgb, encode_fixed_png, harmonise_pixels, harmonised_jpeg_bytes


def study_confound_audit(*, study: Study, seed: int | None = None) -> dict:
    """Audit `study`'s main images (real against each generator) and store the result on the study."""
    size = tuple(study.provenance.get("blinded_size") or ()) or None
    arms: dict[str, list[dict]] = {}
    seen: set[int] = set()
    items = study.items.filter(role=StudyItem.Role.MAIN).select_related("image").order_by("id")
    for item in items:
        if item.image_id in seen:
            continue
        seen.add(item.image_id)
        with item.image.file.open("rb") as fh:
            data = audited_bytes(data=fh.read(), harmonisation=study.harmonisation, size=size)
        arm = "real" if item.truth == "real" else item.generator
        arms.setdefault(arm, []).append(confounds.image_features(data, name=str(item.image)))
    if "real" not in arms or len(arms) < 2:
        report = {"warnings": [], "arms": {}, "note": "no real and synthetic main images to compare"}
    else:
        report = confounds.confound_audit(arms, seed=study.seed if seed is None else seed)
    report["harmonisation"] = study.harmonisation
    report["audited_at"] = timezone.now().isoformat()
    study.confound_audit = report
    study.save(update_fields=["confound_audit"])
    return report


def audited_bytes(*, data: bytes, harmonisation: str, size: tuple[int, int] | None) -> bytes:
    """The file the audit measures: the source itself, or what the harmonisation makes of it."""
    if harmonisation == Study.Harmonisation.NONE:
        return data
    if harmonisation == Study.Harmonisation.JPEG90:
        # The JPEG the jpeg90 path goes through, not its decoded pixels: its tables are what the audit reads.
        return harmonised_jpeg_bytes(harmonise_pixels(decode_srgb(data=data), size=size, harmonisation="none"))
    return encode_fixed_png(harmonise_pixels(decode_srgb(data=data), size=size, harmonisation=harmonisation))


def confound_audit_meta(*, audit: dict) -> pd.DataFrame:
    """Key/value rows for the results' `meta` table: the separability AUC and warning of each arm."""
    rows = [("confound_harmonisation", audit.get("harmonisation", ""))] if audit else []
    for arm, result in (audit or {}).get("arms", {}).items():
        auc = result.get("auc")
        rows.append((f"low_level_separability_auc[{arm}]", "" if auc is None else f"{auc:.3f}"))
        if result.get("warning"):
            rows.append((f"confound_warning[{arm}]", result["warning"]))
    return pd.DataFrame(rows, columns=["key", "value"])

