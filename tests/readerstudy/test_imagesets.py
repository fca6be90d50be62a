"""Registering image sets: provenance, labels from class sub-folders, bad images refused, nothing half-written."""
import io
from collections import Counter

import pytest
from django.core.management import CommandError, call_command

from readerstudy.models import Image, ImageSet
from readerstudy.services.imagesets import ImageSetError, ImageSpec, image_check_bytes, image_set_create
from tests.factories import png_bytes


@pytest.mark.django_db
def test_image_rows_store_hash_size_format_and_origin():
    import hashlib

    data = png_bytes(1, size=40, fmt="JPEG")
    image_set = image_set_create(
        name="s", kind="synthetic", generator="diffusion", provenance={"checkpoint": "ema.pt", "steps": 250},
        images=[ImageSpec(name="x.jpg", data=data, label="IDH", origin={"seed": 3, "index": 0})],
    )
    image = image_set.images.get()
    assert (image.sha256, image.width, image.height, image.format) == (hashlib.sha256(data).hexdigest(), 40, 40, "JPEG")
    assert image.origin == {"seed": 3, "index": 0} and image_set.provenance["steps"] == 250
    assert "x.jpg" not in image.file.name  # stored under the content hash, never the original name


@pytest.mark.django_db
def test_one_bad_image_keeps_nothing(_media_root):
    specs = [ImageSpec(name=f"{i}.png", data=png_bytes(i)) for i in range(3)] + [ImageSpec(name="bad.png", data=b"x")]
    with pytest.raises(ImageSetError, match="bad.png: not a readable image"):
        image_set_create(name="s", kind="real", generator="real", images=specs)
    assert not ImageSet.objects.exists() and not Image.objects.exists()
    assert not [p for p in _media_root.rglob("*") if p.is_file()]


def test_image_check_refuses_bombs_before_decoding_and_odd_formats():
    from PIL import Image as PILImage

    out = io.BytesIO()
    PILImage.new("L", (300, 300)).save(out, format="PNG")
    with pytest.raises(ImageSetError, match="300x300 pixels is more than the limit of 10000"):
        image_check_bytes(name="big.png", data=out.getvalue(), max_pixels=10_000)
    out = io.BytesIO()
    PILImage.new("RGB", (4, 4)).save(out, format="GIF")
    with pytest.raises(ImageSetError, match="tiny.gif: format GIF is not one of"):
        image_check_bytes(name="tiny.gif", data=out.getvalue())
    assert image_check_bytes(name="ok.png", data=png_bytes(1, size=8)) == (8, 8, "PNG")


@pytest.mark.django_db
def test_kind_and_generator_rules():
    spec = [ImageSpec(name="a.png", data=png_bytes(1))]
    with pytest.raises(ImageSetError, match="real image set has generator 'real'"):
        image_set_create(name="a", kind="real", generator="diffusion", images=spec)
    with pytest.raises(ImageSetError, match="kind 'fake'"):
        image_set_create(name="a", kind="fake", generator="x", images=spec)
    for reserved in ("all", " All "):  # the results' row of all synthetic images together
        with pytest.raises(ImageSetError, match=f"generator {reserved!r} is reserved"):
            image_set_create(name="s", kind="synthetic", generator=reserved, images=spec)
    assert not ImageSet.objects.filter(name="s").exists()
    image_set_create(name="s", kind="synthetic", generator="all-v2", images=spec)
    image_set_create(name="a", kind="real", generator="real", images=spec)
    with pytest.raises(ImageSetError, match="named 'a' exists already"):
        image_set_create(name="a", kind="real", generator="real", images=spec)


@pytest.mark.django_db
def test_register_image_set_command(tmp_path):
    from tests.factories import png_bytes

    for label in ("IDH", "WT"):
        (tmp_path / "patches" / label).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "patches" / label / f"{i}.png").write_bytes(png_bytes(i + (10 if label == "WT" else 0)))
    (tmp_path / "patches" / "README.txt").write_text("not an image")
    out = io.StringIO()
    call_command("register_image_set", "tcga", str(tmp_path / "patches"), "--kind", "real",
                 "--provenance", '{"slides": 2}', stdout=out)
    image_set = ImageSet.objects.get(name="tcga")
    assert image_set.generator == "real" and image_set.provenance["slides"] == 2
    assert Counter(image_set.images.values_list("label", flat=True)) == {"IDH": 3, "WT": 3}
    assert "6 images, labels IDH, WT" in out.getvalue()
    with pytest.raises(CommandError, match="synthetic image set needs a generator"):
        call_command("register_image_set", "gen", str(tmp_path / "patches"), "--kind", "synthetic")
    with pytest.raises(CommandError, match="not a folder"):
        call_command("register_image_set", "x", str(tmp_path / "missing"), "--kind", "real")
