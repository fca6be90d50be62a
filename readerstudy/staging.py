"""Staged media writes: files written inside `staged_writes()` move into place only when the transaction commits.

The default file storage (`STORAGES["default"]`) is `StagingFileSystemStorage`. Outside a staging
session it is Django's `FileSystemStorage`. Inside one (a context variable, so threads and
concurrent requests do not mix), a file saved under the name `N` is written to
`MEDIA_ROOT/.staging/<session>/N` while rows already store `N`; reads of `N` find the staged file.
When the block ends without an error the files are moved to `MEDIA_ROOT/N` once the surrounding
transaction commits (`transaction.on_commit`; at once when there is none); on an error they are
deleted. A process killed mid-way leaves only its session folder, which `services.media` sweeps:
a staged file whose name a row references is moved into place (the commit happened, the move did
not), anything else is deleted.
"""
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from django.core.files.storage import FileSystemStorage, default_storage
from django.db import transaction

STAGING_DIR = ".staging"
OWNER_FILE = "owner.json"
# A session older than this is abandoned even if a process with its pid still runs.
STALE_AFTER_SECONDS = 6 * 3600


@dataclass
class StagingSession:
    root: Path
    names: list[str] = field(default_factory=list)


_session: ContextVar[StagingSession | None] = ContextVar("histosynth_staging_session", default=None)
# Final absolute path -> staged path of every file staged by this process and not yet moved or deleted
# (keyed by the absolute path, so that two media roots, as in tests, never mix).
_pending: dict[str, Path] = {}


class StagingFileSystemStorage(FileSystemStorage):
    """`FileSystemStorage` that writes to the active staging session, if any (see the module)."""

    def _save(self, name, content):
        session = _session.get()
        if session is None:
            return super()._save(name, content)
        target = session.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as fh:
            for chunk in content.chunks():
                fh.write(chunk)
        session.names.append(name)
        _pending[super().path(name)] = target
        return name

    def path(self, name):
        final = super().path(name)
        staged = _pending.get(final)
        return str(staged) if staged is not None else final

    def exists(self, name):
        return super().path(name) in _pending or super().exists(name)

    def delete(self, name):
        staged = _pending.pop(super().path(name), None)
        if staged is None:
            return super().delete(name)
        staged.unlink(missing_ok=True)

    def final_path(self, name) -> str:
        """Where `name` lives once published, staged or not."""
        return super().path(name)


def staging_root() -> Path:
    return Path(default_storage.location) / STAGING_DIR


@contextmanager
def staged_writes() -> Iterator[StagingSession]:
    """Stage every file saved in the block; publish on commit, delete on error (see the module)."""
    if _session.get() is not None:  # nested: the outer session owns the files
        yield _session.get()
        return
    root = staging_root() / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    root.mkdir(parents=True)
    (root / OWNER_FILE).write_text(
        json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()})
    )
    session = StagingSession(root=root)
    token = _session.set(session)
    try:
        yield session
    except BaseException:
        _session.reset(token)
        _discard(session)
        raise
    _session.reset(token)
    transaction.on_commit(lambda: _publish(session))


def _publish(session: StagingSession) -> None:
    for name in session.names:
        staged = _pending.pop(_final_path(name), None)
        if staged is not None and staged.exists():
            publish_file(staged=staged, name=name)
    shutil.rmtree(session.root, ignore_errors=True)


def publish_file(*, staged: Path, name: str) -> None:
    """Move one staged file to its final place under MEDIA_ROOT (an atomic rename on one file system)."""
    final = Path(_final_path(name))
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, final)


def _final_path(name: str) -> str:
    final_path = getattr(default_storage, "final_path", None)
    return final_path(name) if final_path is not None else default_storage.path(name)


def _discard(session: StagingSession) -> None:
    for name in session.names:
        _pending.pop(_final_path(name), None)
    shutil.rmtree(session.root, ignore_errors=True)


def abandoned_sessions(*, now: float | None = None) -> list[Path]:
    """Session folders whose process is gone (same host, pid not running) or that are stale."""
    root = staging_root()
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            owner = json.loads((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            owner = {"started": folder.stat().st_mtime}
        stale = now - float(owner.get("started", 0)) > STALE_AFTER_SECONDS
        if stale or (owner.get("host") == socket.gethostname() and not _alive(int(owner.get("pid", -1)))):
            found.append(folder)
    return found


def session_files(folder: Path) -> list[str]:
    """Final names of the files staged in a session folder."""
    names = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return sorted(name for name in names if name != OWNER_FILE)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
