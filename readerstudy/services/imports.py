"""Importing a study from an uploaded zip archive of images and a `manifest.csv`.

The manifest has the columns `filename,truth,generator,label` (`truth` is `real` or `synthetic`;
an optional `role` column marks `practice` items; any further column is kept as the image's
origin). The archive is checked completely before anything is written, and every problem is
reported with its row or file name: a file that is not a zip, entries with `..` or absolute
paths, decompression bombs (total uncompressed size and per-image pixel count are limited, and
nothing is decoded before its header has been checked), files that are not images or are
corrupt, names without an image extension, missing columns, unknown truth values, duplicate,
missing or unlisted files. Only a wholly valid archive creates anything: one image set per
(truth, generator) and the study, with its confound audit.

Nothing half-written: the archive is read from disk (or the upload's temporary file) entry by
entry, never whole into memory; the entry count, the total unpacked size and each entry's
compression ratio are limited before anything is unpacked, and unpacking stops at the budget.
Checked images wait in a temporary folder; the rows and the media files are written in one
transaction inside a staging session (`readerstudy.staging`), so the files move into place only
when it commits, and a killed import leaves only a staging folder that `media_sweep` (or the
next import) removes.
"""
import csv
import hashlib
import io
import random
import re
import shutil
import tempfile
import uuid
import zipfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from django.db import transaction

from readerstudy.models import ImageSet, Study, StudyItem, Truth
from readerstudy.services.audit import study_confound_audit
from readerstudy.services.blinding import REPEATS_NOTE
from readerstudy.services.building import repeat_items
from readerstudy.services.imagesets import (
    IMAGE_SUFFIXES,
    MAX_IMAGE_PIXELS,
    ImageSetError,
    ImageSpec,
    image_check_bytes,
    image_set_create,
    reserved_generator_problem,
)
from readerstudy.services.media import staging_sweep
from readerstudy.services.studies import ItemSpec, StudyError, study_create, study_settings_validate
from readerstudy.staging import staged_writes

MANIFEST = "manifest.csv"
REQUIRED_COLUMNS = ("filename", "truth", "generator", "label")
ROLES = {"": StudyItem.Role.MAIN, "main": StudyItem.Role.MAIN, "practice": StudyItem.Role.PRACTICE}
# Written by macOS's archiver beside the real entries; never part of a study.
_IGNORED = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$)")


@dataclass(frozen=True)
class ImportLimits:
    """What an archive may hold; anything beyond is refused before it is decompressed."""

    max_entries: int = 20_000
    max_total_bytes: int = 512 * 1024 * 1024
    max_image_pixels: int = MAX_IMAGE_PIXELS
    # Unpacked over packed size of one entry (images are compressed already; a bomb is not), checked
    # for entries above `ratio_min_bytes`.
    max_ratio: float = 100.0
    ratio_min_bytes: int = 1024 * 1024
    max_manifest_bytes: int = 32 * 1024 * 1024


class StudyImportError(ValueError):
    """The archive is not valid; `problems` lists every problem found, each naming its row or file."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class _Row:
    line: int
    filename: str
    truth: str
    generator: str
    label: str
    role: str
    origin: dict


def study_import(
    *,
    name: str,
    archive: str | Path | BinaryIO,
    seed: int = 0,
    repeats: int = 0,
    blinded_size: tuple[int, int] | None = None,
    harmonisation: str = Study.Harmonisation.NONE,
    limits: ImportLimits = ImportLimits(),
    progress: Callable[[str, int, int], None] | None = None,
    archive_name: str | None = None,
    **settings_fields,
) -> Study:
    """Create a draft study (and its image sets) from a zip archive, or raise `StudyImportError`.

    `progress(stage, done, total)` is told how far checking and writing have got (for jobs);
    `archive_name` names the archive in messages and provenance (default: its file name).
    """
    staging_sweep(delete=True)  # what an earlier, killed import left behind
    if archive_name is None:
        archive_name = Path(archive).name if isinstance(archive, (str, Path)) else getattr(archive, "name", "") or "archive"
    archive_name = Path(str(archive_name)).name
    problems: list[str] = []
    try:
        study_settings_validate(**settings_fields)
    except StudyError as exc:
        problems.append(str(exc))
    if not name or not name.strip():
        problems.append("the study needs a name")
    elif len(name) > 150:
        problems.append(f"study name of {len(name)} characters: the limit is 150")
    elif Study.objects.filter(name=name).exists():
        problems.append(f"a study named {name!r} exists already")
    if repeats < 0:
        problems.append(f"repeats {repeats}: must be 0 or more")
    if harmonisation not in Study.Harmonisation.values:
        problems.append(f"harmonisation {harmonisation!r}: expected one of {', '.join(Study.Harmonisation.values)}")

    with tempfile.TemporaryDirectory(prefix="histosynth-import-") as unpacked:
        sha256, rows, files = _read_archive(
            archive=archive, archive_name=archive_name, limits=limits, problems=problems, out=Path(unpacked),
            progress=progress,
        )
        groups: dict[tuple[str, str], list[_Row]] = defaultdict(list)
        for row in rows:
            groups[(row.truth, row.generator)].append(row)
        set_names = {key: f"{name} / {key[0]} / {key[1]}" for key in groups}
        for set_name in set_names.values():
            if ImageSet.objects.filter(name=set_name).exists():
                problems.append(f"an image set named {set_name!r} exists already")
        n_main = sum(row.role == StudyItem.Role.MAIN for row in rows)
        if rows and n_main == 0:
            problems.append(f"{MANIFEST}: no main items (every row is a practice item)")
        if repeats > n_main and rows:
            problems.append(f"{repeats} repeated items asked for, but the archive has only {n_main} main items")
        if problems:
            raise StudyImportError(problems)
        return _create(
            name=name, groups=groups, set_names=set_names, files=files, seed=seed, repeats=repeats,
            blinded_size=blinded_size, harmonisation=harmonisation,
            provenance={"archive": archive_name, "archive_sha256": sha256},
            settings_fields=settings_fields, progress=progress,
        )


def _create(
    *, name, groups, set_names, files, seed, repeats, blinded_size, harmonisation, provenance, settings_fields,
    progress,
) -> Study:
    """Write the image sets, the study and its audit in one transaction, their files in one staging session."""
    total = sum(len(rows) for rows in groups.values())
    written = iter(range(1, total + 1))

    def specs(rows: list[_Row]):
        for row in rows:
            if progress is not None:
                progress("written", next(written), total)
            yield ImageSpec(name=row.filename, path=files[row.filename], label=row.label, origin=row.origin)

    with staged_writes(), transaction.atomic():
        by_name = {}
        for key in sorted(groups):
            truth, generator = key
            image_set = image_set_create(
                name=set_names[key], kind=truth, generator=generator, images=specs(groups[key]),
                provenance={**provenance, "source": "study archive"},
            )
            for image in image_set.images.select_related("image_set"):
                by_name[image.original_name] = image
        rng = random.Random(seed)
        rows = sorted((row for rows in groups.values() for row in rows), key=lambda r: r.line)
        main = [ItemSpec(image=by_name[r.filename]) for r in rows if r.role == StudyItem.Role.MAIN]
        practice = [ItemSpec(image=by_name[r.filename], role=r.role) for r in rows if r.role != StudyItem.Role.MAIN]
        rng.shuffle(main)  # item ids must not follow the manifest's order, which may be grouped by source
        items = main + repeat_items(main=main, repeats=repeats, rng=rng) + practice
        study = study_create(
            name=name, items=items, seed=seed, blinded_size=blinded_size, harmonisation=harmonisation,
            provenance={**provenance, "repeats": repeats, **({"repeats_note": REPEATS_NOTE} if repeats else {})},
            **settings_fields,
        )
        study_confound_audit(study=study)
    return study


def _open_archive(archive) -> tuple[str | BinaryIO, int]:
    """What `zipfile` should read (a path on disk whenever there is one) and its size in bytes."""
    if isinstance(archive, (str, Path)):
        return str(archive), Path(archive).stat().st_size
    temporary = getattr(archive, "temporary_file_path", None)
    if temporary is not None:  # Django's upload spooled to disk
        return temporary(), Path(temporary()).stat().st_size
    archive.seek(0, io.SEEK_END)
    size = archive.tell()
    archive.seek(0)
    return archive, size


def _sha256(source) -> str:
    digest = hashlib.sha256()
    if isinstance(source, str):
        with open(source, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    else:
        source.seek(0)
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
        source.seek(0)
    return digest.hexdigest()


def _read_archive(
    *, archive, archive_name: str, limits: ImportLimits, problems: list[str], out: Path, progress=None
) -> tuple[str, list[_Row], dict[str, Path]]:
    """(archive sha256, valid manifest rows, unpacked paths of the listed files); problems are appended.

    Each listed image is unpacked into `out` (one at a time, within the size budget) and checked there.
    """
    try:
        source, size = _open_archive(archive)
        sha256 = _sha256(source)
    except OSError as exc:
        problems.append(f"{archive_name}: cannot be read ({exc})")
        return "", [], {}
    if size > limits.max_total_bytes:
        problems.append(f"{archive_name}: {size} bytes, more than the limit of {limits.max_total_bytes}")
        return sha256, [], {}
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError):
        problems.append(f"{archive_name}: not a zip archive")
        return sha256, [], {}
    with zf:
        entries = _check_entries(zf=zf, limits=limits, problems=problems)
        if entries is None:
            return sha256, [], {}
        prefix = _manifest_prefix(entries)
        if prefix is None:
            problems.append(f"{archive_name}: no {MANIFEST} at the top of the archive")
            return sha256, [], {}
        budget = [limits.max_total_bytes]
        manifest_budget = [min(limits.max_manifest_bytes, budget[0])]  # the one entry read into memory
        manifest = _read_entry(zf=zf, info=entries[prefix + MANIFEST], budget=manifest_budget, problems=problems)
        budget[0] -= len(manifest or b"")
        if manifest is None:
            return sha256, [], {}
        named: set[str] = set()  # every file a row names, its other cells valid or not
        rows = _parse_manifest(data=manifest, problems=problems, named=named)
        listed = {prefix + row.filename: row for row in rows}
        for entry in sorted(entries):
            if entry != prefix + MANIFEST and entry[len(prefix):] not in named:
                problems.append(f"{entry}: in the archive but not listed in {MANIFEST}")
        files: dict[str, Path] = {}
        for n, (entry, row) in enumerate(listed.items(), start=1):
            if progress is not None:
                progress("checked", n, len(listed))
            if entry not in entries:
                problems.append(f"{MANIFEST} line {row.line}: {row.filename!r} is not in the archive")
                continue
            target = out / f"{n:06d}{PurePosixPath(row.filename).suffix.lower()}"
            if not _unpack_entry(zf=zf, info=entries[entry], target=target, budget=budget, problems=problems):
                continue
            try:
                image_check_bytes(name=entry, data=target.read_bytes(), max_pixels=limits.max_image_pixels)
            except ImageSetError as exc:
                problems.append(str(exc))
                target.unlink()
                continue
            files[row.filename] = target
        return sha256, rows, files


def _check_entries(*, zf: zipfile.ZipFile, limits: ImportLimits, problems: list[str]) -> dict | None:
    """The archive's file entries by name; None (with the problems) if it must not be read at all."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        problems.append(f"the archive has {len(infos)} entries, more than the limit of {limits.max_entries}")
        return None
    entries: dict[str, zipfile.ZipInfo] = {}
    unsafe = False
    for info in infos:
        name = info.filename
        parts = re.split(r"[/\\]", name)
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
            problems.append(f"{name}: absolute path in the archive")
            unsafe = True
        elif ".." in parts:
            problems.append(f"{name}: '..' in a path in the archive")
            unsafe = True
        elif "\x00" in name:
            problems.append(f"{name!r}: NUL character in a path in the archive")
            unsafe = True
        elif (info.external_attr >> 16) & 0o170000 == 0o120000:
            problems.append(f"{name}: symbolic link in the archive")
        elif info.flag_bits & 0x1:
            problems.append(f"{name}: encrypted entry")
        elif info.is_dir() or _IGNORED.search(name):
            continue
        elif name in entries:
            problems.append(f"{name}: more than one entry with this name in the archive")
        elif info.file_size > limits.ratio_min_bytes and info.file_size > limits.max_ratio * max(1, info.compress_size):
            problems.append(
                f"{name}: unpacks {info.file_size / max(1, info.compress_size):.0f} times its packed size, more than "
                f"the limit of {limits.max_ratio:.0f} (a decompression bomb?)"
            )
            unsafe = True
        else:
            entries[name] = info
    declared = sum(info.file_size for info in infos)
    if declared > limits.max_total_bytes:
        problems.append(
            f"the archive unpacks to {declared} bytes, more than the limit of {limits.max_total_bytes} "
            "(a decompression bomb?)"
        )
        return None
    return None if unsafe else entries


def _manifest_prefix(entries: dict) -> str | None:
    """'' for a manifest at the top; 'folder/' when the whole archive sits in one folder with it."""
    if MANIFEST in entries:
        return ""
    tops = {PurePosixPath(name).parts[0] for name in entries}
    if len(tops) == 1:
        prefix = f"{tops.pop()}/"
        if prefix + MANIFEST in entries:
            return prefix
    return None


def _read_entry(*, zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: list[int], problems: list[str]) -> bytes | None:
    """An entry's bytes, never more than what is left of the archive's total budget."""
    try:
        with zf.open(info) as fh:
            data = fh.read(budget[0] + 1)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
        problems.append(f"{info.filename}: cannot be unpacked ({exc})")
        return None
    if len(data) > budget[0]:
        problems.append(f"{info.filename}: unpacks beyond the archive's size limit (a decompression bomb?)")
        budget[0] = 0
        return None
    budget[0] -= len(data)
    return data


def _unpack_entry(
    *, zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: list[int], problems: list[str]
) -> bool:
    """Unpack one entry to `target` in chunks, never past what is left of the archive's budget."""
    written, too_big = 0, False
    try:
        with zf.open(info) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > budget[0]:
                    problems.append(f"{info.filename}: unpacks beyond the archive's size limit (a decompression bomb?)")
                    budget[0], too_big = 0, True
                    break
                dst.write(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
        problems.append(f"{info.filename}: cannot be unpacked ({exc})")
        target.unlink(missing_ok=True)
        return False
    if too_big:
        target.unlink(missing_ok=True)
        return False
    budget[0] -= written
    return True


def _parse_manifest(*, data: bytes, problems: list[str], named: set[str] | None = None) -> list[_Row]:
    """Valid rows of the manifest; each bad row or cell is reported with its line number."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.append(f"{MANIFEST}: not UTF-8 text ({exc})")
        return []
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        problems.append(
            f"{MANIFEST}: missing column(s) {', '.join(missing)}; expected {','.join(REQUIRED_COLUMNS)}"
            + (f" (found {','.join(header)})" if header else " (the file is empty)")
        )
        return []
    if len(set(header)) != len(header):
        problems.append(f"{MANIFEST}: a column name appears twice in the header")
        return []
    reader.fieldnames = header
    rows: list[_Row] = []
    first_line: dict[str, int] = {}
    try:
        for raw in reader:
            row = _parse_row(raw=raw, line=reader.line_num, first_line=first_line, problems=problems)
            if named is not None and None not in raw:
                named.add((raw.get("filename") or "").strip().replace("\\", "/"))
            if row is not None:
                rows.append(row)
    except csv.Error as exc:
        problems.append(f"{MANIFEST} line {reader.line_num}: {exc}")
    if not first_line and not any(p.startswith(f"{MANIFEST} line") for p in problems):
        problems.append(f"{MANIFEST}: no rows")
    return rows


def _parse_row(*, raw: dict, line: int, first_line: dict[str, int], problems: list[str]) -> _Row | None:
    where = f"{MANIFEST} line {line}"
    if None in raw:
        problems.append(f"{where}: more cells than columns")
        return None
    cells = {k: (v or "").strip() for k, v in raw.items()}
    errors = []
    filename = cells["filename"].replace("\\", "/")
    if not filename:
        errors.append("empty filename")
    elif filename.startswith("/") or ".." in filename.split("/") or re.match(r"^[A-Za-z]:", filename):
        errors.append(f"filename {filename!r} is not a plain relative path")
    elif filename == MANIFEST:
        errors.append(f"filename {filename!r} is the manifest itself")
    elif PurePosixPath(filename).suffix.lower() not in IMAGE_SUFFIXES:
        errors.append(
            f"filename {filename!r} does not end in an image extension ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    elif filename in first_line:
        errors.append(f"filename {filename!r} is listed twice (first on line {first_line[filename]})")
    else:
        first_line[filename] = line
    truth = cells["truth"].lower()
    generator = cells["generator"]
    if truth not in Truth.values:
        errors.append(f"unknown truth {cells['truth']!r} (expected real or synthetic)")
    elif truth == Truth.REAL:
        if generator.lower() not in ("", "real"):
            errors.append(f"truth is real, so generator must be 'real' or empty, not {generator!r}")
        generator = "real"
    elif not generator or generator.lower() == "real":
        errors.append(f"truth is synthetic, so generator must name the generator (got {generator!r})")
    elif reserved := reserved_generator_problem(generator):
        errors.append(reserved)
    role = cells.get("role", "").lower()
    if role not in ROLES:
        errors.append(f"unknown role {cells['role']!r} (expected main or practice)")
    if len(cells["label"]) > 100 or len(generator) > 100:
        errors.append("label and generator are limited to 100 characters")
    for error in errors:
        problems.append(f"{where}: {error}")
    if errors:
        return None
    origin = {k: v for k, v in cells.items() if k not in (*REQUIRED_COLUMNS, "role") and v}
    return _Row(line, filename, truth, generator, cells["label"], ROLES[role], origin)


# --- large uploads: a background job instead of a web request ----------------------------------------

# Archives with more entries than this are imported by a job (`Job.Kind.IMPORT_STUDY`), with progress.
BACKGROUND_ABOVE_ENTRIES = 300
UPLOADS_DIR = "imports"  # under MEDIA_ROOT, not a file field's folder; each archive is removed after its job


def archive_entry_count(archive) -> int:
    """How many entries an archive lists (its central directory only); 0 if it is not a readable zip."""
    try:
        source, _ = _open_archive(archive)
        with zipfile.ZipFile(source) as zf:
            return len(zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return 0
    finally:
        if hasattr(archive, "seek"):
            archive.seek(0)


def study_import_or_queue(*, archive, created_by=None, **kwargs):
    """`study_import` at once for a small archive (returns the Study); for a large one, store the
    archive on disk and queue an import job (returns the Job), so that no web worker times out."""
    if archive_entry_count(archive) <= BACKGROUND_ABOVE_ENTRIES:
        return study_import(archive=archive, **kwargs)
    from django.core.files.storage import default_storage

    from jobs.models import Job
    from jobs.runners import RunnerError
    from jobs.services import JobError, job_create

    if Study.objects.filter(name=kwargs.get("name")).exists():  # the quick checks before a long wait
        raise StudyImportError([f"a study named {kwargs.get('name')!r} exists already"])

    folder = Path(default_storage.location) / UPLOADS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    name = Path(str(getattr(archive, "name", "") or "archive.zip")).name
    stored = folder / f"{uuid.uuid4().hex}.zip"
    source, _ = _open_archive(archive)
    if isinstance(source, str):
        shutil.copyfile(source, stored)
    else:
        with open(stored, "wb") as fh:
            shutil.copyfileobj(source, fh, 1 << 20)
    params = {k: v for k, v in kwargs.items() if v is not None}
    if "blinded_size" in params:
        params["blinded_size"] = "{}x{}".format(*params["blinded_size"])
    try:
        return job_create(
            kind=Job.Kind.IMPORT_STUDY, params={**params, "archive": str(stored), "archive_name": name},
            created_by=created_by,
        )
    except (RunnerError, JobError) as exc:
        stored.unlink(missing_ok=True)
        raise StudyImportError([str(exc)]) from exc
    except Exception:
        stored.unlink(missing_ok=True)
        raise


def study_import_stored(*, archive: str, archive_name: str = "", progress=None, **kwargs) -> Study:
    """The import job's work: import an archive stored by `study_import_or_queue` under its uploaded
    name, then remove it. Only archives in the uploads folder are taken (and so deleted)."""
    from django.core.files.storage import default_storage

    uploads = (Path(default_storage.location) / UPLOADS_DIR).resolve()
    path = Path(archive).resolve()
    if path.parent != uploads:
        raise StudyImportError([f"{archive}: not an uploaded archive (expected a file in {uploads})"])
    if "blinded_size" in kwargs and isinstance(kwargs["blinded_size"], str):
        kwargs["blinded_size"] = tuple(int(v) for v in kwargs["blinded_size"].lower().split("x"))
    try:
        return study_import(archive=path, archive_name=archive_name or None, progress=progress, **kwargs)
    finally:
        path.unlink(missing_ok=True)
