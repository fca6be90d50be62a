"""Registering the patches written by `generation.slides.extract` as real reader-study image sets,
one per split (`<prefix>-train`, `<prefix>-val`, `<prefix>-test`), each image with its origin
(slide_id, x, y, level, size, mpp). Imports Django (the ML core never imports this module).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from django.core.files.storage import default_storage
from django.db import transaction

from readerstudy.models import ImageSet
from readerstudy.services.imagesets import ImageSetError, ImageSpec, image_set_create

SPLIT_ORDER = ("train", "val", "test")


def _origin(row: dict, manifest: Path, line: int) -> dict:
    try:
        mpp = float(row["mpp"]) if row.get("mpp") not in (None, "") else None
        return {
            "slide_id": row["slide_id"], "x": int(row["x"]), "y": int(row["y"]), "level": int(row["level"]),
            "size": int(row["size"]), "mpp": mpp,
        }
    except (KeyError, ValueError, TypeError) as exc:
        raise ImageSetError(f"{manifest}, line {line}: bad or missing origin field ({exc})") from exc


def patch_image_sets_register(*, out_dir: Path | str, name_prefix: str, description: str = "") -> dict[str, ImageSet]:
    """Create one real `ImageSet` per split found in `out_dir/manifest.csv`, all or none."""
    out_dir = Path(out_dir)
    manifest = out_dir / "manifest.csv"
    if not manifest.is_file():
        raise ImageSetError(f"{manifest}: missing; is {out_dir} a folder written by extract_patches?")
    by_split: dict[str, list[ImageSpec]] = {}
    with manifest.open(newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            split = (row.get("split") or "").strip()
            if not split:
                raise ImageSetError(f"{manifest}, line {line}: no split")
            path = out_dir / (row.get("path") or "")
            if not row.get("path") or not path.is_file():
                raise ImageSetError(f"{manifest}, line {line}: patch file {path} does not exist")
            by_split.setdefault(split, []).append(ImageSpec(
                name=row["path"], path=path, label=row.get("label", ""), origin=_origin(row, manifest, line),
            ))
    if not by_split:
        raise ImageSetError(f"{manifest}: no patches listed")
    names = {split: f"{name_prefix}-{split}" for split in by_split}
    taken = sorted(n for n in names.values() if ImageSet.objects.filter(name=n).exists())
    if taken:
        raise ImageSetError(f"image sets named {', '.join(map(repr, taken))} exist already; choose another prefix")
    settings_path = out_dir / "settings.json"
    settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
    created: dict[str, ImageSet] = {}
    stored: list[str] = []
    ordered = sorted(by_split, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s))
    try:
        with transaction.atomic():
            for split in ordered:
                specs = by_split[split]
                image_set = image_set_create(
                    name=names[split], kind="real", generator="real", images=specs, description=description,
                    provenance={
                        "source": "extract_patches", "folder": str(out_dir.resolve()), "split": split,
                        "slides": sorted({s.origin["slide_id"] for s in specs}), "settings": settings,
                    },
                )
                stored += [name for name in image_set.images.values_list("file", flat=True)]
                created[split] = image_set
    except Exception:
        for name in stored:  # the rows are rolled back; remove the files of the sets made before the failure
            default_storage.delete(name)
        raise
    return created
