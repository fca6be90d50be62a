"""Blinding of study images: one format, one mode, one size, no metadata.

Each study image is re-encoded once, when the study is made, to an RGB PNG of the study's size
with no EXIF, ICC profile or text chunks, so that a JPEG-compressed real patch and a PNG
synthetic one differ only in their pixels.
"""
import io

from PIL import Image as PILImage

BLINDED_FORMAT = "PNG"
BLINDED_CONTENT_TYPE = "image/png"


def blind_image_bytes(*, data: bytes, size: tuple[int, int] | None = None) -> bytes:
    """Return `data` decoded and re-encoded as a metadata-free RGB PNG, resized to `size` if given."""
    with PILImage.open(io.BytesIO(data)) as src:
        src.load()
        pixels = src.convert("RGB")
    if size is not None and pixels.size != tuple(size):
        pixels = pixels.resize(tuple(size), PILImage.Resampling.LANCZOS)
    # A fresh image carries no info dict, so nothing but the pixels is written.
    clean = PILImage.new("RGB", pixels.size)
    clean.paste(pixels)
    out = io.BytesIO()
    clean.save(out, format=BLINDED_FORMAT, optimize=False, compress_level=6)
    return out.getvalue()
