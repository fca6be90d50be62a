"""Registering a folder written by `generation.sampling.generate` as a synthetic reader-study image
set, with full provenance (checkpoint, step, config, sampler, steps, guidance, seed) on the set and
the label, index and seed on every image. Imports Django (the ML core never imports this module).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from readerstudy.models import ImageSet
from readerstudy.services.imagesets import ImageSetError, ImageSpec, image_set_create


def sampled_image_set_register(*, folder: Path | str, name: str, description: str = "") -> ImageSet:
    """Create a synthetic `ImageSet` from `folder`'s `manifest.csv` and `provenance.json`."""
    folder = Path(folder)
    manifest, prov_path = folder / "manifest.csv", folder / "provenance.json"
    for path in (manifest, prov_path):
        if not path.is_file():
            raise ImageSetError(f"{path}: missing; is {folder} a folder written by generate_images?")
    provenance = json.loads(prov_path.read_text())
    specs = []
    with manifest.open(newline="") as f:
        for row_number, row in enumerate(csv.DictReader(f), start=2):
            if not row.get("path"):
                raise ImageSetError(f"{manifest}, row {row_number}: empty 'path'")
            path = folder / row["path"]
            if not path.is_file():
                raise ImageSetError(f"{manifest}, row {row_number}: {path} does not exist")
            specs.append(ImageSpec(
                name=row["path"], path=path, label=row.get("label", ""),
                origin={"index": int(row["index"]), "seed": int(row["seed"]), "label_index": int(row["label_index"]),
                        "generator": provenance.get("generator", ""), "checkpoint_step": provenance.get("checkpoint_step")},
            ))
    provenance = {**provenance, "folder": str(folder.resolve())}
    return image_set_create(name=name, kind="synthetic", generator=provenance.get("generator", "diffusion"),
                            images=specs, provenance=provenance, description=description)
