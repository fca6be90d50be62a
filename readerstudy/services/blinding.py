"""Blinding of study images: one format, one mode, one size, no metadata.

Each study image is re-encoded once, when the study is made, to an RGB PNG of the study's size
with no EXIF, ICC profile or text chunks, so that a JPEG-compressed real patch and a PNG
synthetic one differ only in their pixels. Before the metadata is dropped, what it would have
changed on screen is applied to the pixels: the EXIF orientation is turned into a rotation and an
embedded ICC profile is converted to sRGB, the colour space a browser assumes for untagged images.
"""
import io

from PIL import Image as PILImage
from PIL import ImageCms, ImageOps

BLINDED_FORMAT = "PNG"
BLINDED_MODE = "RGB"
BLINDED_CONTENT_TYPE = "image/png"
BLINDED_SUFFIX = ".png"

_SRGB = ImageCms.createProfile("sRGB")


class BlindingError(ValueError):
    """An image could not be decoded for blinding."""


def blind_image_bytes(*, data: bytes, size: tuple[int, int] | None = None) -> bytes:
    """Return `data` decoded and re-encoded as a metadata-free RGB PNG, resized to `size` if given."""
    try:
        with PILImage.open(io.BytesIO(data)) as src:
            src.load()
            pixels = _to_srgb(ImageOps.exif_transpose(src) or src)
    except (OSError, ValueError, SyntaxError) as exc:
        raise BlindingError(f"not a decodable image ({exc})") from exc
    if size is not None and pixels.size != tuple(size):
        pixels = pixels.resize(tuple(size), PILImage.Resampling.LANCZOS)
    # A fresh image carries no info dict, so nothing but the pixels is written.
    clean = PILImage.new(BLINDED_MODE, pixels.size)
    clean.paste(pixels)
    out = io.BytesIO()
    clean.save(out, format=BLINDED_FORMAT, optimize=False, compress_level=6)
    return out.getvalue()


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
