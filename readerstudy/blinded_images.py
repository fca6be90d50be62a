"""Serving blinded study images fast: a per-process cache of their bytes, or a sendfile-style hand-off
to the front web server.

A blinded file never changes once its study is built (its token URL is private-immutable), and a
reader study's images are few and small (thousands of patches of tens of kilobytes), so each
process keeps the bytes it has served in a bounded LRU cache (`READER_IMAGE_CACHE_BYTES`, default
64 MiB; 0 turns it off) keyed by the item and its stored name: a repeat is one dictionary lookup,
no file open, no read.

Behind nginx or Apache, `READER_IMAGE_SENDFILE` hands the file to the front server instead:
"x-accel-redirect" (nginx: an `internal` location mapping `READER_IMAGE_ACCEL_PREFIX`, default
"/protected-media/", onto MEDIA_ROOT) or "x-sendfile" (Apache mod_xsendfile: the absolute path).
The server strips that header, so the stored name never reaches the reader; every other header is
the view's, the same for every item.
"""
import threading
from collections import OrderedDict

from django.conf import settings
from django.http import HttpResponse

from readerstudy.models import StudyItem
from readerstudy.services.blinding import BLINDED_CONTENT_TYPE

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024


class BlindedBytesCache:
    """A thread-safe LRU cache of file bytes, bounded by their total size."""

    def __init__(self):
        self._entries: OrderedDict[tuple, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            data = self._entries.get(key)
            if data is not None:
                self._entries.move_to_end(key)
            return data

    def put(self, key: tuple, data: bytes, *, max_bytes: int) -> None:
        if len(data) > max_bytes:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = data
            self._size += len(data)
            while self._size > max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._size -= len(evicted)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0

    @property
    def size(self) -> int:
        return self._size


cache = BlindedBytesCache()


def blinded_bytes(item: StudyItem) -> bytes:
    """The blinded file's bytes, from this process's cache when it served them before."""
    max_bytes = getattr(settings, "READER_IMAGE_CACHE_BYTES", DEFAULT_CACHE_BYTES)
    # The media root is in the key too: another root (a test's, another install's) holds other files.
    key = (str(settings.MEDIA_ROOT), item.pk, item.blinded_file.name)
    data = cache.get(key) if max_bytes else None
    if data is None:
        with item.blinded_file.open("rb") as fh:
            data = fh.read()
        if max_bytes:
            cache.put(key, data, max_bytes=max_bytes)
    return data


def blinded_image_response(item: StudyItem) -> HttpResponse:
    """The item's blinded PNG: bytes from the cache, or a hand-off to the front server (see above)."""
    mode = getattr(settings, "READER_IMAGE_SENDFILE", "")
    if mode == "x-accel-redirect":
        response = HttpResponse(content_type=BLINDED_CONTENT_TYPE)
        prefix = getattr(settings, "READER_IMAGE_ACCEL_PREFIX", "/protected-media/")
        response["X-Accel-Redirect"] = prefix.rstrip("/") + "/" + item.blinded_file.name
        return response
    if mode == "x-sendfile":
        response = HttpResponse(content_type=BLINDED_CONTENT_TYPE)
        response["X-Sendfile"] = item.blinded_file.path
        return response
    return HttpResponse(blinded_bytes(item), content_type=BLINDED_CONTENT_TYPE)
