"""Registering image sets: files with their labels and origins become `ImageSet` and `Image` rows.

Used by patch extraction (real sets), sampling (synthetic sets), study import and the demo.
"""
import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image as PILImage

from readerstudy.models import Image, ImageSet, Truth
from readerstudy.study_mrmc import ALL


@dataclass(frozen=True)
class ImageSpec:
    """One image to register: its bytes (or a path to read them from), name, label and origin."""

    name: str
    data: bytes | None = None
    path: Path | None = None
    label: str = ""
    origin: dict = field(default_factory=dict)

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.path is None:
            raise ValueError(f"{self.name}: neither data nor path given")
        return Path(self.path).read_bytes()


# Formats accepted in image sets (what slides, samplers and uploads produce).
IMAGE_FORMATS = {"PNG", "JPEG", "TIFF", "BMP", "WEBP"}
# File name extensions of those formats: an upload named otherwise (say `.html`) is refused.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
# Patches are small; anything above this many pixels is refused before it is decoded.
MAX_IMAGE_PIXELS = 4096 * 4096


# Generator names the results keep for rows of their own: "real" (the real images) and "all" (the MRMC
# row of every synthetic image together); a synthetic set named so would be mixed up with them.
RESERVED_GENERATORS = ("real", ALL)


def reserved_generator_problem(generator: str) -> str | None:
    """Why a synthetic image set cannot have `generator` as its generator name, or None when it can."""
    if generator.strip().lower() in RESERVED_GENERATORS:
        return (f"generator {generator!r} is reserved: the results call the real images 'real' and all synthetic "
                "images together 'all'; name the generator otherwise")
    return None


class ImageSetError(ValueError):
    """An image set could not be registered; the message names the image at fault."""


def image_set_create(
    *,
    name: str,
    kind: str,
    generator: str,
    images: Iterable[ImageSpec],
    provenance: dict | None = None,
    description: str = "",
) -> ImageSet:
    """Create an image set with all its images, atomically: on any bad image nothing is kept."""
    if not name or not name.strip():
        raise ImageSetError("an image set needs a name")
    if kind not in Truth.values:
        raise ImageSetError(f"kind {kind!r}: expected one of {', '.join(Truth.values)}")
    if kind == Truth.REAL and generator != "real":
        raise ImageSetError(f"a real image set has generator 'real', not {generator!r}")
    if kind == Truth.SYNTHETIC and (not generator.strip() or generator == "real"):
        raise ImageSetError(f"a synthetic image set needs a generator name other than 'real', not {generator!r}")
    if kind == Truth.SYNTHETIC and (reserved := reserved_generator_problem(generator)):
        raise ImageSetError(reserved)
    if ImageSet.objects.filter(name=name).exists():
        raise ImageSetError(f"an image set named {name!r} exists already")
    saved: list[Image] = []
    try:
        with transaction.atomic():
            image_set = ImageSet.objects.create(
                name=name, kind=kind, generator=generator, provenance=provenance or {}, description=description
            )
            seen: set[str] = set()
            for spec in images:
                if spec.name in seen:
                    raise ImageSetError(f"{spec.name}: listed twice")
                seen.add(spec.name)
                saved.append(_image_add(image_set=image_set, spec=spec))
            if not seen:
                raise ImageSetError(f"image set {name!r} has no images")
    except Exception:
        for image in saved:  # the rows are rolled back; remove the files they pointed at
            image.file.delete(save=False)
        raise
    return image_set


def image_check_bytes(*, name: str, data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int, str]:
    """(width, height, format) of an image file's bytes; `ImageSetError` naming `name` if unusable.

    The pixel count is checked from the header before any decoding, so a decompression bomb is
    refused without being decompressed.
    """
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            width, height, fmt = img.width, img.height, (img.format or "").upper()
            if width * height > max_pixels:
                raise ImageSetError(
                    f"{name}: {width}x{height} pixels is more than the limit of {max_pixels} "
                    "(a decompression bomb?)"
                )
            img.verify()
        with PILImage.open(io.BytesIO(data)) as img:
            img.load()
    except ImageSetError:
        raise
    except PILImage.UnidentifiedImageError as exc:  # its text names the in-memory buffer, not the file
        raise ImageSetError(f"{name}: not a readable image (not an image file, or a format PIL cannot open)") from exc
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for corrupt files
        raise ImageSetError(f"{name}: not a readable image ({exc})") from exc
    if fmt not in IMAGE_FORMATS:
        raise ImageSetError(f"{name}: format {fmt or 'unknown'} is not one of {', '.join(sorted(IMAGE_FORMATS))}")
    return width, height, fmt


def image_content_type(file) -> str | None:
    """The MIME type sniffed from a stored file's bytes if they verify as an accepted image, else None."""
    try:
        with file.open("rb") as fh:
            image_check_bytes(name=file.name, data=fh.read())
            fh.seek(0)
            with PILImage.open(fh) as img:
                return PILImage.MIME.get(img.format or "")
    except (ImageSetError, OSError):
        return None


def _image_add(*, image_set: ImageSet, spec: ImageSpec) -> Image:
    data = spec.read()
    width, height, fmt = image_check_bytes(name=spec.name, data=data)
    sha256 = hashlib.sha256(data).hexdigest()
    # The stored name's extension follows the sniffed format, never the given name (`x.html`).
    suffix = Path(spec.name).suffix.lower() if Path(spec.name).suffix.lower() in IMAGE_SUFFIXES else f".{fmt.lower()}"
    image = Image(
        image_set=image_set,
        original_name=spec.name,
        label=spec.label,
        sha256=sha256,
        width=width,
        height=height,
        format=fmt,
        origin=spec.origin,
    )
    # Stored under the set's id and the content hash: never the original name, which may leak truth.
    image.file.save(f"{image_set.pk}/{sha256[:32]}{suffix}", ContentFile(data), save=False)
    try:
        image.save()
    except Exception:
        image.file.delete(save=False)
        raise
    return image


def image_set_specs_from_folder(*, folder: Path, label_from_subfolder: bool = True) -> list[ImageSpec]:
    """Image files under `folder` (png, jpg, jpeg, tif, tiff), labelled by their sub-folder if asked."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageSetError(f"{folder}: not a folder")
    specs = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in {".png", ".jpg", ".jpeg", ".tif", ".tiff"} or not path.is_file():
            continue
        rel = path.relative_to(folder)
        label = rel.parts[0] if label_from_subfolder and len(rel.parts) > 1 else ""
        specs.append(ImageSpec(name=str(rel), path=path, label=label))
    return specs
