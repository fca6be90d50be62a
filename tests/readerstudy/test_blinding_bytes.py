"""Blinded study files: a JPEG-with-EXIF real patch and a PNG-with-text synthetic one differ only in pixels."""
import io
import re
import struct

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageCms, PngImagePlugin

from readerstudy.models import StudyItem
from readerstudy.services.blinding import BlindingError, blind_image_bytes, blinded_length, encode_fixed_png
from readerstudy.services.imagesets import ImageSpec, image_set_create
from readerstudy.services.studies import ItemSpec, study_create


def _pixels(seed: int, size=(48, 48)) -> PILImage.Image:
    rng = np.random.default_rng(seed)
    return PILImage.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


def _jpeg_with_exif_and_icc(seed: int, size=(48, 48)) -> bytes:
    img = _pixels(seed, size)
    exif = img.getexif()
    exif[0x010F] = "Aperio"  # Make
    exif[0x0131] = "ScanScope real-slide"  # Software
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=80, exif=exif.tobytes(), icc_profile=icc, dpi=(300, 300))
    return out.getvalue()


def _png_with_text(seed: int, size=(48, 48)) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("generator", "diffusion")
    info.add_itxt("Comment", "synthetic sample seed 3")
    out = io.BytesIO()
    _pixels(seed, size).convert("RGBA").save(out, format="PNG", pnginfo=info, dpi=(72, 72))
    return out.getvalue()


def _png_chunks(data: bytes) -> list[str]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append(data[pos + 4 : pos + 8].decode("ascii"))
        pos += 12 + length
    return chunks


def test_sources_really_carry_metadata():
    # Guard: the inputs of the tests below do carry what blinding must remove.
    with PILImage.open(io.BytesIO(_jpeg_with_exif_and_icc(1))) as jpg:
        assert jpg.format == "JPEG" and jpg.getexif() and jpg.info.get("icc_profile")
    with PILImage.open(io.BytesIO(_png_with_text(2))) as png:
        assert png.text.get("generator") == "diffusion" and png.mode == "RGBA"


@pytest.mark.django_db
def test_study_items_are_blinded_to_one_format_mode_size_without_metadata():
    real = image_set_create(
        name="real", kind="real", generator="real",
        images=[ImageSpec(name="TCGA-slide-real_0001.jpg", data=_jpeg_with_exif_and_icc(1), label="IDH")],
    )
    fake = image_set_create(
        name="fake", kind="synthetic", generator="diffusion",
        # A different size too: blinding brings every item to the study's one size.
        images=[ImageSpec(name="diffusion_fake_0001.png", data=_png_with_text(2, size=(64, 64)), label="IDH")],
    )
    study = study_create(
        name="s", items=[ItemSpec(image=real.images.get()), ItemSpec(image=fake.images.get())],
        blinded_size=(48, 48),
    )
    items = list(study.items.all())
    assert len(items) == 2
    described = []
    for item in items:
        with item.blinded_file.open("rb") as fh:
            data = fh.read()
        # Only the chunks a plain image needs: no eXIf, iCCP, tEXt, iTXt, zTXt, pHYs, tIME, gAMA.
        assert set(_png_chunks(data)) == {"IHDR", "IDAT", "IEND"}, item.generator
        for needle in (b"Exif", b"Aperio", b"ScanScope", b"diffusion", b"synthetic", b"real", b"sRGB"):
            assert needle not in data
        with PILImage.open(io.BytesIO(data)) as img:
            described.append((img.format, img.mode, img.size, dict(img.info), len(img.getexif())))
    assert described[0] == described[1] == ("PNG", "RGB", (48, 48), {}, 0)


@pytest.mark.django_db
def test_blinded_file_names_carry_no_truth_or_original_name():
    real = image_set_create(
        name="real", kind="real", generator="real",
        images=[ImageSpec(name="REAL_patch.jpg", data=_jpeg_with_exif_and_icc(3), label="A")],
    )
    fake = image_set_create(
        name="fake", kind="synthetic", generator="progan",
        images=[ImageSpec(name="PROGAN_fake.png", data=_png_with_text(4), label="A")],
    )
    study = study_create(name="s", items=[ItemSpec(image=real.images.get()), ItemSpec(image=fake.images.get())])
    for item in study.items.all():
        name, url = item.blinded_file.name, item.blinded_file.url
        # Nothing but the random per-item token: no original name, generator, truth or sequential id.
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", item.token)
        assert name == f"studies/{item.token}.png"
        assert url.endswith(name)
    assert study.items.filter(role=StudyItem.Role.MAIN).count() == 2


def test_pixels_survive_blinding_and_orientation_is_applied():
    src = _pixels(5, size=(40, 30))
    out = io.BytesIO()
    src.save(out, format="PNG")
    with PILImage.open(io.BytesIO(blind_image_bytes(data=out.getvalue()))) as img:
        assert np.array_equal(np.asarray(img), np.asarray(src))  # lossless path keeps every pixel
    exif = src.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = io.BytesIO()
    src.save(out, format="PNG", exif=exif.tobytes())
    with PILImage.open(io.BytesIO(blind_image_bytes(data=out.getvalue()))) as img:
        assert img.size == (30, 40)  # turned as a browser would show it, then the tag dropped
        assert np.array_equal(np.asarray(img), np.asarray(src.transpose(PILImage.Transpose.ROTATE_270)))


def test_transparency_is_laid_on_white_and_corrupt_data_is_refused():
    rgba = PILImage.new("RGBA", (8, 8), (10, 20, 30, 0))
    out = io.BytesIO()
    rgba.save(out, format="PNG")
    with PILImage.open(io.BytesIO(blind_image_bytes(data=out.getvalue()))) as img:
        assert img.getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(BlindingError):
        blind_image_bytes(data=b"not an image at all")


# --- no size channel --------------------------------------------------------------------------------


def _smooth(size=(48, 48)) -> PILImage.Image:
    ramp = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3).astype(np.uint8)
    return PILImage.fromarray(ramp)


def _encoded(img: PILImage.Image, fmt: str = "PNG", **kwargs) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kwargs)
    return out.getvalue()


def test_smooth_and_noisy_images_blind_to_the_same_length_and_decode_losslessly():
    smooth, noisy = _smooth(), _pixels(9)
    # Guard: compressed, these two differ by a wide margin (the size band the probe found).
    assert len(_encoded(noisy)) > 2 * len(_encoded(smooth))
    a, b = blind_image_bytes(data=_encoded(smooth)), blind_image_bytes(data=_encoded(noisy))
    assert len(a) == len(b) == blinded_length((48, 48))
    for data, src in ((a, smooth), (b, noisy)):
        with PILImage.open(io.BytesIO(data)) as img:
            assert (img.format, img.mode, img.size) == ("PNG", "RGB", (48, 48))
            assert np.array_equal(np.asarray(img), np.asarray(src))
        assert _png_chunks(data) == ["IHDR", "IDAT", "IEND"]


def test_multi_block_images_decode_and_length_depends_on_size_only():
    # 200x200 RGB scanlines are 120,200 bytes: two stored deflate blocks.
    big_noisy, big_flat = _pixels(3, size=(200, 200)), PILImage.new("RGB", (200, 200), (7, 7, 7))
    a, b = encode_fixed_png(big_noisy), encode_fixed_png(big_flat)
    assert len(a) == len(b) == blinded_length((200, 200))
    with PILImage.open(io.BytesIO(a)) as img:
        assert np.array_equal(np.asarray(img), np.asarray(big_noisy))
    assert blinded_length((200, 200)) != blinded_length((200, 199))


@pytest.mark.parametrize("harmonisation", ["jpeg90", "resize"])
def test_harmonisation_keeps_the_fixed_length_and_changes_pixels_the_same_way(harmonisation):
    noisy = _encoded(_pixels(4))
    out = blind_image_bytes(data=noisy, harmonisation=harmonisation)
    assert len(out) == blinded_length((48, 48))
    with PILImage.open(io.BytesIO(out)) as img:
        assert not np.array_equal(np.asarray(img), np.asarray(_pixels(4)))
    # Deterministic: same source, same bytes (repeat items are byte-identical to their originals).
    assert out == blind_image_bytes(data=noisy, harmonisation=harmonisation)
    with pytest.raises(BlindingError, match="harmonisation 'gif'"):
        blind_image_bytes(data=noisy, harmonisation="gif")


@pytest.mark.django_db
def test_served_smooth_and_noisy_items_have_equal_length_and_headers_except_date():
    from django.test import Client

    from readerstudy.services.studies import study_assign_readers, study_set_state
    from tests.factories import PASSWORD, make_user

    real = image_set_create(
        name="real", kind="real", generator="real",
        images=[ImageSpec(name="smooth.jpg", data=_encoded(_smooth(), "JPEG", quality=90), label="A")],
    )
    fake = image_set_create(
        name="fake", kind="synthetic", generator="diffusion",
        images=[ImageSpec(name="noisy.png", data=_encoded(_pixels(8, size=(64, 64))), label="A")],
    )
    study = study_create(
        name="s", items=[ItemSpec(image=real.images.get()), ItemSpec(image=fake.images.get())],
        blinded_size=(48, 48),
    )
    assert study.provenance["resized_from"] == {"64x64": 1}
    assert study.provenance["blinded_bytes"] == blinded_length((48, 48))
    reader = make_user()
    study_assign_readers(study=study, users=[reader])
    study_set_state(study=study, state="open")
    client = Client()
    assert client.login(username=reader.username, password=PASSWORD)
    first = client.get(f"/api/reader/studies/{study.pk}/next/").json()
    urls = [first["image_url"], first["preload_url"]]  # the shown image and the prefetched next one
    assert sorted(urls) == sorted(f"/i/{t}.png" for t in study.items.values_list("token", flat=True))
    served = [client.get(url) for url in urls]
    lengths = {len(r.content) for r in served} | {int(r["Content-Length"]) for r in served}
    assert lengths == {blinded_length((48, 48))}
    headers = [{k.lower(): v for k, v in r.headers.items() if k.lower() != "date"} for r in served]
    assert headers[0] == headers[1]
    assert "etag" not in headers[0] and "last-modified" not in headers[0]


@pytest.mark.django_db
def test_reblind_study_gives_an_old_study_one_length_and_keeps_tokens(_media_root, django_capture_on_commit_callbacks):
    from io import StringIO

    from django.core.files.base import ContentFile
    from django.core.management import call_command

    real = image_set_create(name="real", kind="real", generator="real",
                            images=[ImageSpec(name="smooth.png", data=_encoded(_smooth()), label="A")])
    fake = image_set_create(name="fake", kind="synthetic", generator="diffusion",
                            images=[ImageSpec(name="noisy.png", data=_encoded(_pixels(8)), label="A")])
    study = study_create(name="old", items=[ItemSpec(image=real.images.get()), ItemSpec(image=fake.images.get())])
    # As such a study was made before: compressed PNGs whose lengths tell the arms apart.
    old = {}
    for item in study.items.select_related("image"):
        with item.image.file.open("rb") as fh:
            item.blinded_file.save(f"{item.token}.png", ContentFile(_encoded(PILImage.open(fh))), save=True)
        old[item.token] = item.blinded_file.name
    assert len({item.blinded_file.size for item in study.items.all()}) == 2
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("reblind_study", "old", stdout=out)
    assert f"every file {blinded_length((48, 48))} bytes" in out.getvalue()
    items = list(study.items.all())
    assert {item.token for item in items} == set(old)
    assert {item.blinded_file.size for item in items} == {blinded_length((48, 48))}
    for item in items:
        assert item.blinded_file.name != old[item.token] and not (_media_root / old[item.token]).exists()
        assert (_media_root / item.blinded_file.name).is_file()
    study.refresh_from_db()
    assert study.provenance["reblinded"] and study.confound_audit["arms"]
