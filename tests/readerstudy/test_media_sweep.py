"""Nothing half-written: the media sweep (orphans, abandoned staging) and an import killed mid-way."""
import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command

from readerstudy.services.media import media_sweep, referenced_media, swept_folders
from readerstudy.staging import STAGING_DIR
from readerstudy.tasks import media_sweep_task
from tests.factories import make_study, png_bytes, study_archive

ROOT = Path(__file__).resolve().parents[2]


def _files(media: Path) -> set[str]:
    return {p.relative_to(media).as_posix() for p in media.rglob("*") if p.is_file()}


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _abandoned_session(media: Path, files: dict[str, bytes]) -> Path:
    folder = media / STAGING_DIR / f"{socket.gethostname()}-{_dead_pid()}-test"
    folder.mkdir(parents=True)
    (folder / "owner.json").write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(),
                                                   "started": time.time()}))
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.django_db
def test_sweep_reports_then_removes_only_unreferenced_files_in_file_field_folders(_media_root):
    study = make_study(n_real=2, n_synthetic=2)
    kept = _files(_media_root)
    assert kept == referenced_media() and {"imagesets", "studies"} <= set(swept_folders())
    orphans = {"imagesets/99/orphan.png": b"x", "studies/orphan.png": b"y"}
    for name, data in orphans.items():
        (_media_root / name).parent.mkdir(parents=True, exist_ok=True)
        (_media_root / name).write_bytes(data)
    (_media_root / "evaluation" / "cache").mkdir(parents=True)
    (_media_root / "evaluation" / "cache" / "features.npz").write_bytes(b"not ours to judge")

    # Fresh files are left alone by default: their rows may still be on the way.
    assert media_sweep(delete=True).recent_orphans == sorted(orphans)
    dry = media_sweep(min_age_seconds=0)
    assert dry.orphans == sorted(orphans) and not dry.deleted
    assert set(orphans) <= _files(_media_root)
    out = io.StringIO()
    call_command("media_sweep", "--delete", "--min-age", "0", stdout=out)
    assert "removed orphan: imagesets/99/orphan.png" in out.getvalue()
    assert _files(_media_root) == kept | {"evaluation/cache/features.npz"}
    assert study.items.count() == 4 and all((_media_root / n).is_file() for n in kept)


@pytest.mark.django_db
def test_abandoned_staging_is_rolled_forward_when_committed_and_back_otherwise(_media_root):
    study = make_study(n_real=1, n_synthetic=1)
    item = study.items.first()
    committed = item.blinded_file.name
    data = (_media_root / committed).read_bytes()
    (_media_root / committed).unlink()  # committed, but the process died before moving the file
    folder = _abandoned_session(_media_root, {committed: data, "imagesets/7/never-committed.png": b"z"})
    # A live process's session is never touched.
    live = _media_root / STAGING_DIR / "live"
    live.mkdir()
    (live / "owner.json").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                                 "started": time.time()}))
    dry = media_sweep()
    assert dry.staged_restored == [committed] and dry.staged_removed == ["imagesets/7/never-committed.png"]
    assert folder.exists()
    assert media_sweep_task(delete=True, min_age_minutes=0)["staged_removed"] == 1
    assert not folder.exists() and live.exists()
    assert (_media_root / committed).read_bytes() == data


def test_the_sweep_is_on_celery_beats_schedule():
    from config.celery import app

    entry = app.conf.beat_schedule["readerstudy-media-sweep"]
    assert entry["task"] == media_sweep_task.name and entry["schedule"] > 0


@pytest.mark.django_db
def test_the_next_import_sweeps_what_a_killed_one_left(_media_root):
    from readerstudy.services.imports import study_import

    folder = _abandoned_session(_media_root, {"imagesets/5/left-over.png": b"x"})
    manifest = "filename,truth,generator,label\na.png,real,real,A\nb.png,synthetic,gan,A\n"
    study_import(name="Next", archive=study_archive({"a.png": png_bytes(1), "b.png": png_bytes(2)}, manifest))
    assert not folder.exists()


def test_an_import_killed_mid_way_leaves_no_row_and_after_the_sweep_no_file(tmp_path, settings, db):
    media, db_path = tmp_path / "media", tmp_path / "db.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db_path}", "HISTOSYNTH_MEDIA_ROOT": str(media),
           "CELERY_BROKER_URL": ""}
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        rows = ["filename,truth,generator,label"]
        for i in range(400):
            truth = "real" if i % 2 else "synthetic"
            rows.append(f"img/{i:04d}.png,{truth},{'' if truth == 'real' else 'gan'},A")
            zf.writestr(f"img/{i:04d}.png", png_bytes(i, size=32))
        zf.writestr("manifest.csv", "\n".join(rows) + "\n")
    # One process (Django starts slowly on a busy machine): migrate a fresh database, then import.
    script = (
        "from django.core.management import call_command; call_command('migrate', verbosity=0); "
        f"call_command('import_study', {str(archive)!r}, name='Killed')"
    )
    proc = subprocess.Popen([sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    staging = media / STAGING_DIR
    deadline = time.monotonic() + 240
    try:
        while True:  # kill it once it has begun writing files
            staged = list(staging.rglob("*.png")) if staging.exists() else []
            if len(staged) >= 5:
                break
            assert proc.poll() is None, f"the import ended before it was killed: {proc.communicate()}"
            assert time.monotonic() < deadline, "the import never started writing"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with sqlite3.connect(db_path) as conn:
        for table in ("readerstudy_imageset", "readerstudy_image", "readerstudy_study", "readerstudy_studyitem"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
    left = _files(media)
    assert left and all(name.startswith(f"{STAGING_DIR}/") for name in left), left  # nothing in its final place
    # The sweep, here against this (also empty) test database and the killed import's media folder.
    settings.MEDIA_ROOT = media
    out = io.StringIO()
    call_command("media_sweep", "--delete", stdout=out)
    assert f"{len([n for n in left if not n.endswith('owner.json')])} abandoned staged file(s) removed" in out.getvalue()
    assert _files(media) == set()
