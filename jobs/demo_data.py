"""The demo's real image set: patches cut from scikit-image's bundled immunohistochemistry sample.

`skimage.data.immunohistochemistry()` is a 512 x 512 RGB photograph of an IHC-stained section
(haematoxylin counterstain, brown DAB), shipped inside scikit-image (no download). It is cut into
square patches on a grid and each patch labelled by its stain: `dab-rich` or `dab-poor`, split at the
median DAB optical density of the patches (colour deconvolution, `skimage.color.rgb2hed`), so that
both labels have the same number of patches. This is DEMO DATA, NOT A PATHOLOGY DATA SET: one image,
overlapping crops, labels made from colour. Writes PNGs and a `manifest.csv` in the layout that
`extract_patches` writes and the trainers read. Imports no Django.
"""
import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DEMO_NOTE = "demo data, not a pathology data set: crops of scikit-image's bundled IHC sample, labelled by stain colour"
LABELS = ("dab-poor", "dab-rich")


@dataclass(frozen=True)
class DemoPatches:
    folder: Path
    manifest: Path
    files: list[Path]
    labels: list[str]
    origins: list[dict]


def ihc_image() -> np.ndarray:
    """The bundled sample as uint8 HxWx3; fails clearly if this scikit-image would download it."""
    import skimage
    from skimage import data

    path = Path(skimage.__file__).parent / "data" / "ihc.png"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: scikit-image's immunohistochemistry sample is not bundled in this installation "
            "(the demo never downloads data)"
        )
    image = np.asarray(data.immunohistochemistry())
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{path}: expected an RGB uint8 image, got {image.dtype} {image.shape}")
    return image


def demo_patches_write(*, folder: Path, patch_size: int = 64, stride: int | None = None) -> DemoPatches:
    """Cut the IHC sample into `patch_size` patches every `stride` pixels, write PNGs and manifest.csv.

    Deterministic (no randomness). Written to a temporary folder that replaces `folder` at the end,
    so an interrupted run leaves no half-written set.
    """
    from skimage.color import rgb2hed

    folder = Path(folder)
    stride = stride or patch_size // 2
    image = ihc_image()
    h, w, _ = image.shape
    if not 8 <= patch_size <= min(h, w):
        raise ValueError(f"patch_size {patch_size}: must be between 8 and {min(h, w)}")
    dab = rgb2hed(image)[..., 2]
    boxes = [(y, x) for y in range(0, h - patch_size + 1, stride) for x in range(0, w - patch_size + 1, stride)]
    density = np.array([dab[y:y + patch_size, x:x + patch_size].mean() for y, x in boxes])
    threshold = np.median(density)
    order = np.argsort(density, kind="stable")
    rich = np.zeros(len(boxes), dtype=bool)
    rich[order[len(boxes) // 2:]] = True  # exact halves, ties broken by position
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        _rmtree(tmp)
    files, labels, origins, rows = [], [], [], []
    for i, ((y, x), is_rich) in enumerate(zip(boxes, rich)):
        label = LABELS[int(is_rich)]
        rel = Path(label) / f"ihc_y{y:03d}_x{x:03d}.png"
        (tmp / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[y:y + patch_size, x:x + patch_size]).save(tmp / rel)
        origin = {"slide_id": "skimage-ihc", "x": x, "y": y, "level": 0, "size": patch_size,
                  "dab_density": round(float(density[i]), 6)}
        rows.append({"path": rel.as_posix(), "slide_id": "skimage-ihc", "patient_id": "demo", "label": label,
                     "level": 0, "x": x, "y": y, "size": patch_size, "mpp": "", "tumour_fraction": "",
                     "split": "train"})
        files.append(folder / rel)
        labels.append(label)
        origins.append(origin)
    with (tmp / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (tmp / "README.txt").write_text(
        f"{DEMO_NOTE}.\nSource: skimage.data.immunohistochemistry() (512x512). Patches {patch_size} px every "
        f"{stride} px; label dab-rich when the patch's mean DAB optical density exceeds the median "
        f"{threshold:.5f}.\n"
    )
    if folder.exists():
        _rmtree(folder)
    os.replace(tmp, folder)
    return DemoPatches(folder=folder, manifest=folder / "manifest.csv", files=files, labels=labels, origins=origins)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)
