"""Media housekeeping: find and remove files that no row references, and recover abandoned staging.

Only the folders that file fields upload to (`imagesets/`, `studies/`, `evaluation/grids/`, ...,
found from the models, so a new file field is covered without a change here) are swept; other
things under MEDIA_ROOT (caches, for example) are not ours to judge. A file younger than
`min_age_seconds` is left alone, since a writer outside a staging session may not have committed
its row yet. Staging sessions of dead processes (`readerstudy.staging`) are rolled forward (a
staged file whose name a row references is moved into place) or back (anything else is deleted).
Dry run by default: nothing is changed unless `delete=True`.
"""
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.apps import apps
from django.core.files.storage import default_storage
from django.db import models

from readerstudy.staging import STAGING_DIR, abandoned_sessions, publish_file, session_files


@dataclass
class SweepReport:
    deleted: bool
    orphans: list[str] = field(default_factory=list)
    recent_orphans: list[str] = field(default_factory=list)
    staged_restored: list[str] = field(default_factory=list)
    staged_removed: list[str] = field(default_factory=list)
    abandoned_sessions: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        verb = "removed" if self.deleted else "would remove"
        out = [f"swept folders: {', '.join(self.folders) or '(none)'}"]
        out += [f"{verb} orphan: {name}" for name in self.orphans]
        out += [f"kept (younger than the minimum age): {name}" for name in self.recent_orphans]
        out += [f"{'restored' if self.deleted else 'would restore'} staged: {n}" for n in self.staged_restored]
        out += [f"{verb} staged: {name}" for name in self.staged_removed]
        out.append(
            f"{len(self.orphans)} orphan file(s), {len(self.staged_removed)} abandoned staged file(s) "
            f"{verb}; {len(self.staged_restored)} staged file(s) {'restored' if self.deleted else 'to restore'}"
        )
        return out


def _file_fields() -> list[tuple[type[models.Model], models.FileField]]:
    return [
        (model, f) for model in apps.get_models() for f in model._meta.get_fields()
        if isinstance(f, models.FileField) and not f.many_to_many
    ]


def referenced_media() -> set[str]:
    """Every file name stored in any file field of any model."""
    names: set[str] = set()
    for model, f in _file_fields():
        names.update(model._default_manager.exclude(**{f.name: ""}).values_list(f.name, flat=True).iterator())
    return names


def swept_folders() -> list[str]:
    """The folders that file fields upload to, up to any date pattern (a callable `upload_to` is not guessed at)."""
    folders = set()
    for _, f in _file_fields():
        if isinstance(f.upload_to, str):
            fixed = f.upload_to.split("%")[0].strip("/")
            folder = fixed if f.upload_to.split("%")[0].endswith("/") else fixed.rpartition("/")[0]
            if folder:
                folders.add(folder)
    return sorted(folders)


def media_sweep(*, delete: bool = False, min_age_seconds: float = 3600) -> SweepReport:
    """Report (and with `delete`, remove) unreferenced media files and abandoned staged files."""
    report = SweepReport(deleted=delete, folders=swept_folders())
    referenced = referenced_media()
    root = Path(default_storage.location)
    now = time.time()
    for folder in report.folders:
        base = root / folder
        if not base.is_dir():
            continue
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            name = path.relative_to(root).as_posix()
            if name in referenced:
                continue
            if now - path.stat().st_mtime < min_age_seconds:
                report.recent_orphans.append(name)
                continue
            report.orphans.append(name)
            if delete:
                path.unlink(missing_ok=True)
    staging_sweep(delete=delete, referenced=referenced, report=report)
    return report


def staging_sweep(*, delete: bool = True, referenced: set[str] | None = None, report: SweepReport | None = None):
    """Roll abandoned staging sessions forward or back (see the module); returns the report."""
    report = report or SweepReport(deleted=delete)
    sessions = abandoned_sessions()
    if not sessions:
        return report
    referenced = referenced_media() if referenced is None else referenced
    for folder in sessions:
        report.abandoned_sessions.append(f"{STAGING_DIR}/{folder.name}")
        for name in session_files(folder):
            if name in referenced and not default_storage.exists(name):
                report.staged_restored.append(name)
                if delete:
                    publish_file(staged=folder / name, name=name)
            else:
                report.staged_removed.append(name)
        if delete:
            shutil.rmtree(folder, ignore_errors=True)
    return report
