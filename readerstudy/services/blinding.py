"""Blinding of study images: one format, one mode, one size, one byte length, no metadata.

Each study image is re-encoded once, when the study is made, to an RGB PNG of the study's size
with no EXIF, ICC profile or text chunks, so that a JPEG-compressed real patch and a PNG
synthetic one differ only in their pixels. Before the metadata is dropped, what it would have
changed on screen is applied to the pixels: the EXIF orientation is turned into a rotation and an
embedded ICC profile is converted to sRGB, the colour space a browser assumes for untagged images.

No size channel: a compressed PNG's length follows the image's statistics (noise compresses
badly), so the length alone would separate the arms. The PNG is therefore written here with a
fixed layout, uncompressed: IHDR, one IDAT holding the scanlines in stored (level-0) deflate
blocks of a fixed size, IEND. Its byte length depends only on width and height
(`blinded_length`), so every blinded file of a study has exactly the same length.

Harmonisation (`Study.harmonisation`) puts every source image through the same low-level history
at the study's size before it is blinded: `jpeg90` re-encodes it as JPEG quality 90, `resize`
down-samples it by two (box filter) and back up (bicubic). Both are applied to real and
synthetic images alike, so a trace only one arm carried (JPEG blocks, upscaling) is shared.
"""
import io
import struct
import zlib

from PIL import Image as PILImage
from PIL import ImageCms, ImageOps

BLINDED_FORMAT = "PNG"
BLINDED_MODE = "RGB"
BLINDED_CONTENT_TYPE = "image/png"
BLINDED_SUFFIX = ".png"
HARMONISATIONS = ("none", "jpeg90", "resize")
# Recorded in a study's provenance when it has repeat items: blinding is deterministic, so a repeat's
# file equals its original's byte for byte. Acceptable because readers are told that repeats exist.
REPEATS_NOTE = "repeat items are byte-identical to their originals (readers are told that repeats exist)"

_SRGB = ImageCms.createProfile("sRGB")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_STORED_BLOCK = 65_535  # the largest stored deflate block


class BlindingError(ValueError):
    """An image could not be decoded for blinding."""


def blind_image_bytes(*, data: bytes, size: tuple[int, int] | None = None, harmonisation: str = "none") -> bytes:
    """`data` decoded, harmonised, resized to `size` if given, and written as a fixed-layout RGB PNG."""
    pixels = harmonise_pixels(decode_srgb(data=data), size=size, harmonisation=harmonisation)
    return encode_fixed_png(pixels)


def decode_srgb(*, data: bytes) -> PILImage.Image:
    """The image in `data` as RGB pixels in sRGB, as a browser would show it; `BlindingError` if unreadable."""
    try:
        with PILImage.open(io.BytesIO(data)) as src:
            src.load()
            return _to_srgb(ImageOps.exif_transpose(src) or src)
    except (OSError, ValueError, SyntaxError) as exc:
        raise BlindingError(f"not a decodable image ({exc})") from exc


def harmonise_pixels(
    pixels: PILImage.Image, *, size: tuple[int, int] | None, harmonisation: str = "none"
) -> PILImage.Image:
    """`pixels` brought to `size` (one resampling path for every image), then harmonised."""
    if harmonisation not in HARMONISATIONS:
        raise BlindingError(f"harmonisation {harmonisation!r}: expected one of {', '.join(HARMONISATIONS)}")
    if size is not None and pixels.size != tuple(size):
        pixels = pixels.resize(tuple(size), PILImage.Resampling.LANCZOS)
    if harmonisation == "jpeg90":
        pixels = PILImage.open(io.BytesIO(harmonised_jpeg_bytes(pixels))).convert(BLINDED_MODE)
    elif harmonisation == "resize":
        w, h = pixels.size
        half = pixels.resize((max(1, w // 2), max(1, h // 2)), PILImage.Resampling.BOX)
        pixels = half.resize((w, h), PILImage.Resampling.BICUBIC)
    return pixels


def harmonised_jpeg_bytes(pixels: PILImage.Image) -> bytes:
    """`pixels` as the JPEG (quality 90, 4:2:0, no metadata) that the `jpeg90` harmonisation goes through."""
    out = io.BytesIO()
    pixels.convert(BLINDED_MODE).save(out, format="JPEG", quality=90, subsampling=2, optimize=False)
    return out.getvalue()


def blinded_length(size: tuple[int, int]) -> int:
    """The byte length of every blinded PNG of `size`: it depends on nothing else."""
    width, height = size
    raw = height * (1 + 3 * width)
    n_blocks = max(1, -(-raw // _STORED_BLOCK))
    idat = 2 + 5 * n_blocks + raw + 4
    return len(_PNG_SIGNATURE) + (12 + 13) + (12 + idat) + 12


def blinding_record(items, size: tuple[int, int]) -> dict:
    """What blinding does to a study's items, for its provenance: the one format and length, and
    how many source images (by native size) were resized to the study's size, on which path."""
    resized: dict[str, int] = {}
    for image in {spec.image.pk: spec.image for spec in items}.values():
        if (image.width, image.height) != tuple(size):
            key = f"{image.width}x{image.height}"
            resized[key] = resized.get(key, 0) + 1
    return {
        "blinded_format": "PNG, uncompressed, fixed layout (every file the same length)",
        "blinded_bytes": blinded_length(size),
        "resized_from": dict(sorted(resized.items())),
        "resize_path": f"Lanczos to {size[0]}x{size[1]}, then the harmonisation" if resized else "",
    }


def encode_fixed_png(pixels: PILImage.Image) -> bytes:
    """An 8-bit RGB PNG of `pixels` whose length depends only on its width and height.

    Scanlines use filter 0 and are stored in deflate blocks of 65,535 bytes (the last one shorter):
    no compression, so no content-dependent length, and a layout any PNG decoder reads.
    """
    rgb = pixels if pixels.mode == BLINDED_MODE else pixels.convert(BLINDED_MODE)
    width, height = rgb.size
    row = 3 * width
    flat = rgb.tobytes()
    raw = b"".join(b"\x00" + flat[y * row : (y + 1) * row] for y in range(height))
    blocks = [raw[i : i + _STORED_BLOCK] for i in range(0, len(raw), _STORED_BLOCK)] or [b""]
    stream = bytearray(b"\x78\x01")  # zlib header: deflate, 32 KiB window, no dictionary, check bits
    for n, block in enumerate(blocks):
        final = 1 if n == len(blocks) - 1 else 0
        stream += struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF) + block
    stream += struct.pack(">I", zlib.adler32(raw))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour, no interlace
    out = _PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", bytes(stream)) + _chunk(b"IEND", b"")
    if len(out) != blinded_length((width, height)):  # the invariant the whole module exists for
        raise BlindingError(f"blinded PNG of {len(out)} bytes, expected {blinded_length((width, height))}")
    return out


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _to_srgb(img: PILImage.Image) -> PILImage.Image:
    """`img` as RGB pixels in sRGB: an embedded ICC profile is applied, transparency laid on white."""
    icc = img.info.get("icc_profile")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        img.alpha_composite(rgba)
    if img.mode.startswith("I;16"):
        # 16-bit greyscale: scale to 8 bits rather than clipping.
        img = img.convert("I").point(lambda v: v / 256).convert("L")
    if icc:
        try:
            src_profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            base = img.convert("CMYK" if img.mode == "CMYK" else "RGB")
            return ImageCms.profileToProfile(base, src_profile, _SRGB, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # an unreadable profile: keep the pixels as they are
    return img.convert(BLINDED_MODE)
