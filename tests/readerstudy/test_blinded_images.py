"""Serving blinded images: the per-process cache of their bytes (a repeat reads no file), its bound,
and the sendfile-style hand-offs to nginx and Apache, which keep the view's headers and never send
the stored name in a header the front server passes on."""
import pytest
from django.test import Client

from readerstudy import blinded_images
from readerstudy.blinded_images import BlindedBytesCache
from readerstudy.models import StudyItem
from tests.factories import PASSWORD, make_study, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_cache():
    blinded_images.cache.clear()
    yield
    blinded_images.cache.clear()


def reader_and_items(n=1):
    reader = make_user()
    study = make_study(n_real=n, n_synthetic=n, readers=[reader])
    client = Client()
    assert client.login(username=reader.username, password=PASSWORD)
    return client, list(StudyItem.objects.filter(study=study))


def test_a_served_image_is_kept_in_memory_and_served_again_without_reading_the_file():
    client, items = reader_and_items()
    first = client.get(f"/i/{items[0].token}.png")
    assert first.status_code == 200 and first.content == items[0].blinded_file.read()
    items[0].blinded_file.storage.delete(items[0].blinded_file.name)  # the file is gone: only the cache has it
    again = client.get(f"/i/{items[0].token}.png")
    assert again.status_code == 200 and again.content == first.content
    assert again["Content-Type"] == "image/png"


def test_with_the_cache_off_every_request_reads_the_file(settings):
    settings.READER_IMAGE_CACHE_BYTES = 0
    client, items = reader_and_items()
    assert client.get(f"/i/{items[0].token}.png").status_code == 200
    assert blinded_images.cache.size == 0


def test_the_cache_is_bounded_by_size_and_drops_the_least_recently_used():
    cache = BlindedBytesCache()
    for n in range(5):
        cache.put(("k", n), b"x" * 100, max_bytes=300)
        cache.get(("k", 0))  # kept in use: never the one dropped
    assert cache.size == 300
    assert cache.get(("k", 0)) is not None and cache.get(("k", 4)) is not None
    assert cache.get(("k", 1)) is None and cache.get(("k", 2)) is None
    cache.put(("big",), b"x" * 301, max_bytes=300)  # larger than the whole cache: not kept
    assert cache.get(("big",)) is None and cache.size == 300


@pytest.mark.parametrize("mode, header", [("x-accel-redirect", "X-Accel-Redirect"), ("x-sendfile", "X-Sendfile")])
def test_sendfile_hand_offs_keep_the_views_headers(settings, mode, header):
    settings.READER_IMAGE_SENDFILE = mode
    client, items = reader_and_items()
    seen = []
    for item in items:
        resp = client.get(f"/i/{item.token}.png")
        assert resp.status_code == 200 and resp.content == b""
        target = resp[header]
        assert target.endswith(item.blinded_file.name)
        if mode == "x-accel-redirect":
            assert target.startswith("/protected-media/")
        else:
            assert target == item.blinded_file.path
        # The front server strips the hand-off header; what it passes on is the same for every item.
        seen.append(sorted((k, v) for k, v in resp.headers.items() if k not in (header, "Content-Length")))
    assert seen[0] == seen[1]
    assert ("Content-Type", "image/png") in seen[0] and not any(k == "Content-Disposition" for k, _ in seen[0])
