"""The patch-extraction pipeline: a folder of whole-slide images and a labels CSV to PNG patches, a
manifest with train/val/test splits by patient, and a per-slide report (Moghadam et al., WACV 2023,
sec. 4: TCGA LGG slides, up to 100 tumour patches of 512x512 per slide scaled to 128x128).

Output folder:
    slides/<slide_id>/patches/*.png   the kept patches of one finished slide
    slides/<slide_id>/manifest.csv    its rows (no split), report.json, and DONE (the finished mark)
    manifest.csv                      every finished slide's patches, with labels and splits
    report.csv, report.json           one row per slide: kept, rejected by reason, error
    settings.json                     the sampling settings; a resumed run must use the same

Each slide is written under `.tmp/<slide_id>` and renamed into `slides/` when complete, so an
interrupted run leaves no half slide; a rerun skips finished slides. Slides run in parallel
(spawned processes); a bad slide is reported and the others go on.
"""
from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
import os
import shutil
import time
import traceback
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from generation.slides.annotations import (
    AnnotationError,
    TissueDetectionWarning,
    find_annotation,
    load_annotation,
    mask_from_tissue,
)
from generation.slides.reader import Slide, SlideError
from generation.slides.sampling import (
    REASONS,
    SamplingConfig,
    SamplingCounts,
    SamplingError,
    patch_size_level0,
    sample_patches,
)
from generation.slides.splits import split_slides
from generation.slides.stain import load_reference, make_normaliser
from generation.training.progress import OnProgress, ProgressBar, progress_call

# File suffixes of the formats OpenSlide reads.
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif", ".czi", ".dcm")
SLIDE_MANIFEST_COLUMNS = ("path", "slide_id", "level", "x", "y", "size", "mpp", "tumour_fraction")
MANIFEST_COLUMNS = ("path", "slide_id", "patient_id", "label", "level", "x", "y", "size", "mpp", "tumour_fraction",
                    "split")
REPORT_COLUMNS = ("slide_id", "label", "patient_id", "split", "status", "kept", "candidates",
                  *(f"rejected_{r}" for r in REASONS), "mask_source", "warning", "error", "seconds")
DONE = "DONE"
# A tumour mask is rasterised (or tissue detected) so that one patch spans this many mask pixels,
# and no mask is larger than MAX_MASK_SIDE on its long side.
MASK_PIXELS_PER_PATCH = 16
MAX_MASK_SIDE = 4096


class ExtractError(ValueError):
    """The run cannot start (bad labels CSV, folder, settings); the message names the file and row."""


@dataclass(frozen=True)
class SlideLabel:
    slide_id: str
    label: str
    patient_id: str  # as given; empty when the CSV has none for this slide

    @property
    def group(self) -> str:
        """The unit of splitting: the patient, or the slide itself when no patient is given."""
        return f"patient:{self.patient_id}" if self.patient_id else f"slide:{self.slide_id}"


@dataclass(frozen=True)
class ExtractConfig:
    slides_dir: Path
    labels_csv: Path
    out_dir: Path
    annotations_dir: Path | None = None
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    stain: str | None = None  # "macenko" or "reinhard"
    stain_reference: Path | None = None
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    workers: int = 1
    progress: bool = True
    # (slides done, slides to do, {"slide_id", "kept"}) after each slide; False stops before the next
    # slide (those done are kept: run again with the same out_dir to go on)
    on_progress: OnProgress | None = None


@dataclass
class ExtractResult:
    ok: bool  # True when no slide failed
    reports: list[dict]
    manifest_path: Path
    report_path: Path
    n_patches: int
    stopped: bool = False  # on_progress asked to stop; the slides not started are "pending"

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.reports if r["status"] == "failed"]


# -- inputs ---------------------------------------------------------------------------------------------
def _check_slide_id(slide_id: str) -> str | None:
    if not slide_id:
        return "slide_id is empty"
    if slide_id in (".", "..") or slide_id.startswith(".") or any(c in slide_id for c in "/\\\0"):
        return f"slide_id {slide_id!r} cannot be a folder name (no '/', '\\', leading '.')"
    return None


def read_labels(path: Path) -> list[SlideLabel]:
    """Rows of a labels CSV with header `slide_id,label[,patient_id]`. Errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExtractError(f"{path}: cannot read the labels CSV ({exc})") from exc
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in ("slide_id", "label") if c not in header]
    if missing:
        raise ExtractError(
            f"{path}: header must have slide_id,label[,patient_id]; missing {', '.join(missing)} (found {header})"
        )
    reader.fieldnames = header
    labels: list[SlideLabel] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(reader, start=2):
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue  # blank line
        if None in row:
            raise ExtractError(f"{path}, line {line}: more fields than the header has")
        slide_id = (row.get("slide_id") or "").strip()
        label = (row.get("label") or "").strip()
        patient = (row.get("patient_id") or "").strip()
        problem = _check_slide_id(slide_id)
        if problem:
            raise ExtractError(f"{path}, line {line}: {problem}")
        if not label:
            raise ExtractError(f"{path}, line {line}: slide {slide_id!r} has an empty label")
        if slide_id in seen:
            raise ExtractError(
                f"{path}, line {line}: slide {slide_id!r} is listed again (first on line {seen[slide_id]})"
            )
        seen[slide_id] = line
        labels.append(SlideLabel(slide_id=slide_id, label=label, patient_id=patient))
    if not labels:
        raise ExtractError(f"{path}: no slides listed")
    return labels


def find_slides(slides_dir: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """slide_id (file stem) -> slide file in `slides_dir` (not recursive), and slide_id -> problem for
    ids that several files claim."""
    slides_dir = Path(slides_dir)
    if not slides_dir.is_dir():
        raise ExtractError(f"{slides_dir}: slides folder not found")
    found: dict[str, list[Path]] = {}
    for path in sorted(slides_dir.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in SLIDE_SUFFIXES:
            continue
        found.setdefault(path.stem, []).append(path)
    slides = {sid: paths[0] for sid, paths in found.items() if len(paths) == 1}
    clashes = {
        sid: f"several slide files: {', '.join(p.name for p in paths)}"
        for sid, paths in found.items() if len(paths) > 1
    }
    return slides, clashes


# -- one slide ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlideJob:
    slide: SlideLabel
    path: Path
    annotation: Path | None
    out_dir: Path
    sampling: SamplingConfig
    stain: str | None
    reference: np.ndarray | None


def _mask_downsample(dimensions: tuple[int, int], patch_size: int) -> float:
    return max(1.0, patch_size / MASK_PIXELS_PER_PATCH, max(dimensions) / MAX_MASK_SIDE)


def extract_slide(job: SlideJob) -> dict:
    """Extract one slide into `out_dir/slides/<slide_id>` via a temporary folder. Never raises:
    the returned report says `done` or `failed` with the error."""
    sid = job.slide.slide_id
    started = time.monotonic()
    report = _empty_report(job.slide)
    tmp = job.out_dir / ".tmp" / sid
    final = job.out_dir / "slides" / sid
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        (tmp / "patches").mkdir(parents=True)
        normalise = make_normaliser(job.stain, job.reference) if job.stain else None
        with Slide(job.path) as slide:
            size = patch_size_level0(job.sampling, slide.mpp, sid)
            ds = _mask_downsample(slide.dimensions, size)
            if job.annotation is not None:
                mask = load_annotation(job.annotation, slide.dimensions, ds)
            else:
                thumb, dx, dy = slide.thumbnail(max(1, round(max(slide.dimensions) / ds)))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", TissueDetectionWarning)
                    mask = mask_from_tissue(thumb, dx, dy, slide_name=sid)
                report["warning"] = "no annotation: patches sampled from tissue found by Otsu thresholding"
            report["mask_source"] = mask.source
            counts = SamplingCounts()
            rows = []
            for patch in sample_patches(slide, mask, job.sampling, slide_id=sid, counts=counts, normalise=normalise):
                name = f"{sid}_x{patch.x}_y{patch.y}.png"
                Image.fromarray(patch.image).save(tmp / "patches" / name, optimize=False)
                rows.append({
                    "path": f"slides/{sid}/patches/{name}", "slide_id": sid, "level": patch.level,
                    "x": patch.x, "y": patch.y, "size": patch.size,
                    "mpp": "" if slide.mpp is None else round(slide.mpp, 6),
                    "tumour_fraction": round(patch.tumour_fraction, 4),
                })
        report["kept"] = counts.kept
        report["candidates"] = counts.candidates
        for reason in REASONS:
            report[f"rejected_{reason}"] = int(counts.rejected.get(reason, 0))
        if not rows:
            rejected = ", ".join(f"{k} {v}" for k, v in counts.rejected.items() if v) or "none"
            raise SamplingError(f"{sid}: no patch kept out of {counts.candidates} candidates (rejected: {rejected})")
        _write_csv(tmp / "manifest.csv", SLIDE_MANIFEST_COLUMNS, rows)
        report["status"] = "done"
        report["seconds"] = round(time.monotonic() - started, 3)
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
        (tmp / DONE).write_text("")
        if final.exists():
            shutil.rmtree(final)  # an unfinished leftover: DONE is absent, or we would not be here
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
    except (SlideError, AnnotationError, SamplingError, ValueError, OSError) as exc:
        _fail(report, str(exc), tmp, started)
    except Exception as exc:  # noqa: BLE001 - one slide's unexpected failure must not stop the others
        where = traceback.format_exc(limit=3).splitlines()[-2].strip()
        _fail(report, f"{type(exc).__name__}: {exc} ({where})", tmp, started)
    return report


def _fail(report: dict, message: str, tmp: Path, started: float) -> None:
    report.update(status="failed", error=message, seconds=round(time.monotonic() - started, 3))
    shutil.rmtree(tmp, ignore_errors=True)


def _empty_report(slide: SlideLabel) -> dict:
    report = {c: "" for c in REPORT_COLUMNS}
    report.update(slide_id=slide.slide_id, label=slide.label, patient_id=slide.patient_id, kept=0, candidates=0)
    for reason in REASONS:
        report[f"rejected_{reason}"] = 0
    return report


def _write_csv(path: Path, columns, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


# -- the run -----------------------------------------------------------------------------------------------
def _settings(config: ExtractConfig, reference: np.ndarray | None) -> dict:
    return {
        "sampling": asdict(config.sampling),
        "stain": config.stain or "",
        "stain_reference_sha256": hashlib.sha256(reference.tobytes()).hexdigest() if reference is not None else "",
        "annotations_dir": str(Path(config.annotations_dir).resolve()) if config.annotations_dir else "",
    }


def _check_settings(out_dir: Path, settings: dict) -> None:
    path = out_dir / "settings.json"
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ExtractError(f"{path}: unreadable ({exc}); use a new output folder") from exc
        if previous != settings:
            changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            raise ExtractError(
                f"{out_dir}: made with other settings ({', '.join(changed)} differ); resume with the same "
                "settings or use a new output folder"
            )
    else:
        path.write_text(json.dumps(settings, indent=2, sort_keys=True))


def run_extraction(config: ExtractConfig) -> ExtractResult:
    """Extract every labelled slide (skipping finished ones), then write the manifest and report.
    Raises ExtractError only for problems with the run as a whole; slide problems are reported."""
    out_dir = Path(config.out_dir)
    labels = read_labels(config.labels_csv)
    slides, clashes = find_slides(config.slides_dir)
    if config.annotations_dir is not None and not Path(config.annotations_dir).is_dir():
        raise ExtractError(f"{config.annotations_dir}: annotations folder not found")
    if config.workers < 1:
        raise ExtractError(f"workers must be at least 1, not {config.workers}")
    reference = None
    if config.stain:
        if config.stain_reference is None:
            raise ExtractError(f"stain normalisation {config.stain!r} needs a reference image (--stain-reference)")
        reference = load_reference(config.stain_reference)
        make_normaliser(config.stain, reference)  # fail now, not in every slide, on a bad reference
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(out_dir, _settings(config, reference))
    splits = split_slides({s.slide_id: s.group for s in labels}, config.split, config.sampling.seed)

    reports: dict[str, dict] = {}
    jobs: list[SlideJob] = []
    labelled = {s.slide_id for s in labels}
    for slide in labels:
        report = _empty_report(slide)
        done = out_dir / "slides" / slide.slide_id
        if slide.slide_id in clashes:
            report.update(status="failed", error=f"{slide.slide_id}: {clashes[slide.slide_id]} in {config.slides_dir}")
        elif slide.slide_id not in slides:
            report.update(status="failed",
                          error=f"{slide.slide_id}: no slide file named {slide.slide_id}.<ext> in {config.slides_dir}")
        elif (done / DONE).exists():
            report = json.loads((done / "report.json").read_text())
            report["status"] = "skipped"
        else:
            try:
                annotation = find_annotation(config.annotations_dir, slide.slide_id)
            except AnnotationError as exc:
                report.update(status="failed", error=str(exc))
            else:
                jobs.append(SlideJob(slide=slide, path=slides[slide.slide_id], annotation=annotation, out_dir=out_dir,
                                     sampling=config.sampling, stain=config.stain, reference=reference))
        reports[slide.slide_id] = report
    for sid, path in sorted(slides.items()):
        if sid not in labelled:
            orphan = _empty_report(SlideLabel(slide_id=sid, label="", patient_id=""))
            orphan.update(status="failed", error=f"{path}: slide has no row in {config.labels_csv}")
            reports[sid] = orphan

    stop = {"asked": False}
    for report in _run_jobs(jobs, config, stop):
        reports[report["slide_id"]] = report
    for job in jobs:
        if stop["asked"] and reports[job.slide.slide_id]["status"] == "":
            reports[job.slide.slide_id]["status"] = "pending"
    shutil.rmtree(out_dir / ".tmp", ignore_errors=True)

    by_slide = {s.slide_id: s for s in labels}
    manifest: list[dict] = []
    for sid in sorted(reports):
        report = reports[sid]
        report["split"] = splits.get(sid, "")
        if sid in by_slide:  # labels and patients come from the current CSV, even for resumed slides
            report["label"], report["patient_id"] = by_slide[sid].label, by_slide[sid].patient_id
        if report["status"] in ("done", "skipped"):
            with open(out_dir / "slides" / sid / "manifest.csv", newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    row.update(label=report["label"], patient_id=report["patient_id"], split=report["split"])
                    manifest.append(row)
        if report.get("warning"):
            warnings.warn(f"{sid}: {report['warning']}", TissueDetectionWarning, stacklevel=2)
    ordered = [reports[sid] for sid in sorted(reports)]
    manifest_path = out_dir / "manifest.csv"
    _write_csv(manifest_path, MANIFEST_COLUMNS, manifest)
    _write_csv(out_dir / "report.csv", REPORT_COLUMNS, ordered)
    report_json = out_dir / "report.json"
    report_json.write_text(json.dumps(ordered, indent=2))
    return ExtractResult(
        ok=not any(r["status"] == "failed" for r in ordered),
        reports=ordered,
        manifest_path=manifest_path,
        report_path=report_json,
        n_patches=len(manifest),
        stopped=stop["asked"],
    )


def _run_jobs(jobs: list[SlideJob], config: ExtractConfig, stop: dict):
    bar = ProgressBar(desc="slides", unit="slide", show=("kept",), enabled=config.progress)
    done = 0

    def reported(report: dict) -> dict:
        nonlocal done
        done += 1
        if progress_call([bar, config.on_progress], done, len(jobs),
                         {"slide_id": report["slide_id"], "kept": report.get("kept", 0)}):
            stop["asked"] = True
        return report

    try:
        if config.workers == 1 or len(jobs) <= 1:
            for job in jobs:
                yield reported(extract_slide(job))
                if stop["asked"]:
                    return
            return
        # Spawned processes inherit no threads, locks or database handles. A worker that dies (a
        # crash inside a slide library) breaks the pool: its unfinished slides are reported failed.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(config.workers, len(jobs)), mp_context=context) as pool:
            futures = {pool.submit(extract_slide, job): job for job in jobs}
            for future in as_completed(futures):
                if stop["asked"]:  # slides already running finish; the others never start
                    for other in futures:
                        other.cancel()
                    if future.cancelled():
                        continue
                try:
                    report = future.result()
                except Exception as exc:  # noqa: BLE001 - BrokenProcessPool and pickling errors
                    job = futures[future]
                    report = _empty_report(job.slide)
                    report.update(status="failed", error=(
                        f"{job.slide.slide_id}: worker process failed ({type(exc).__name__}: {exc}); rerun to retry"
                    ))
                yield reported(report)
    finally:
        bar.close()
