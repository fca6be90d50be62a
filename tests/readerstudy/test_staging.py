"""Staged media writes: files saved in a staging session reach MEDIA_ROOT only when the transaction commits."""
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from readerstudy.staging import STAGING_DIR, staged_writes

pytestmark = pytest.mark.django_db


def test_files_move_into_place_on_commit_and_are_readable_before(_media_root, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with staged_writes() as session, transaction.atomic():
            name = default_storage.save("studies/a.png", ContentFile(b"abc"))
            assert not (_media_root / name).exists() and (session.root / name).is_file()
            with default_storage.open(name) as fh:  # rows already point at it: reads find the staged file
                assert fh.read() == b"abc"
            assert default_storage.exists(name)
        assert not (_media_root / name).exists()  # still waiting for the commit
    assert len(callbacks) == 1
    assert (_media_root / name).read_bytes() == b"abc"
    assert not session.root.exists() and not list((_media_root / STAGING_DIR).iterdir())


def test_an_error_deletes_every_staged_file(_media_root):
    with pytest.raises(RuntimeError), staged_writes() as session, transaction.atomic():
        default_storage.save("imagesets/1/x.png", ContentFile(b"x"))
        raise RuntimeError("disk full")
    assert not session.root.exists()
    assert not default_storage.exists("imagesets/1/x.png")
    assert not [p for p in _media_root.rglob("*") if p.is_file()]


def test_nested_sessions_share_the_outer_one_and_writes_outside_go_straight_to_media(_media_root):
    with staged_writes() as outer, staged_writes() as inner:
        assert inner is outer
        default_storage.save("studies/b.png", ContentFile(b"b"))
    assert outer.names == ["studies/b.png"]
    default_storage.save("studies/c.png", ContentFile(b"c"))
    assert (_media_root / "studies" / "c.png").read_bytes() == b"c"
