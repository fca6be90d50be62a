"""The patch-extraction pipeline and `manage.py extract_patches`: small pyramidal TIFF slides with
known tumour regions, read through OpenSlide, to patches, manifest, report, splits and image sets."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, ManagementUtility, call_command
from PIL import Image

from generation.slides.extract import ExtractConfig, ExtractError, read_labels, run_extraction
from generation.slides.sampling import SamplingConfig
from generation.slides.synthetic import Rect, write_slide
from readerstudy.models import ImageSet

SIZE = 1024
TUMOUR = Rect(128, 128, 640, 640)
OTHER_TISSUE = Rect(704, 128, 960, 960)  # tissue, not tumour: never sampled when annotated
SAMPLING = SamplingConfig(patch_size=128, out_size=32, per_slide=8, seed=0)


def area_inside(x, y, size, rect: Rect) -> float:
    w = max(0, min(x + size, rect.x1) - max(x, rect.x0))
    h = max(0, min(y + size, rect.y1) - max(y, rect.y0))
    return w * h / size**2


def write_geojson(path: Path, *rects: Rect) -> None:
    features = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [r.polygon()]},
                 "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}}} for r in rects]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))


def write_mask(path: Path, rect: Rect, downsample: int = 16) -> None:
    arr = np.zeros((SIZE // downsample, SIZE // downsample), np.uint8)
    arr[rect.y0 // downsample:rect.y1 // downsample, rect.x0 // downsample:rect.x1 // downsample] = 1
    Image.fromarray(arr).save(path)


def make_cohort(root: Path, rows: list[tuple[str, str, str]], annotate: str = "geojson") -> tuple[Path, Path, Path]:
    """Slides named by `rows` (slide_id, label, patient_id), each with the tumour annotated."""
    slides, ann = root / "slides", root / "annotations"
    slides.mkdir(parents=True, exist_ok=True)
    ann.mkdir(exist_ok=True)
    for i, (sid, _, _) in enumerate(rows):
        write_slide(slides / f"{sid}.tiff", SIZE, SIZE, tissue=[TUMOUR, OTHER_TISSUE], seed=i)
        if annotate == "geojson":
            write_geojson(ann / f"{sid}.geojson", TUMOUR)
        elif annotate == "mask":
            write_mask(ann / f"{sid}_mask.png", TUMOUR)
    labels = root / "labels.csv"
    labels.write_text("slide_id,label,patient_id\n" + "".join(f"{s},{lab},{p}\n" for s, lab, p in rows))
    return slides, labels, ann


def read_manifest(out: Path) -> list[dict]:
    with open(out / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def config(slides, labels, ann, out, **kw) -> ExtractConfig:
    kw.setdefault("sampling", SAMPLING)
    return ExtractConfig(slides_dir=slides, labels_csv=labels, annotations_dir=ann, out_dir=out, progress=False, **kw)


@pytest.mark.parametrize("annotate", ["geojson", "mask"])
def test_patches_come_only_from_the_annotated_region(tmp_path, annotate):
    slides, labels, ann = make_cohort(tmp_path, [("s1", "IDH", "p1"), ("s2", "1p19q", "p2")], annotate=annotate)
    result = run_extraction(config(slides, labels, ann, tmp_path / "out"))
    assert result.ok and result.n_patches == 16
    rows = read_manifest(tmp_path / "out")
    assert list(rows[0]) == ["path", "slide_id", "patient_id", "label", "level", "x", "y", "size", "mpp",
                             "tumour_fraction", "split"]
    for row in rows:
        x, y, size = int(row["x"]), int(row["y"]), int(row["size"])
        assert size == 128 and row["level"] == "1" and float(row["mpp"]) == 0.5
        assert area_inside(x, y, size, TUMOUR) >= 0.9 and area_inside(x, y, size, OTHER_TISSUE) == 0
        assert float(row["tumour_fraction"]) >= 0.9
        assert row["label"] == {"s1": "IDH", "s2": "1p19q"}[row["slide_id"]]
        with Image.open(tmp_path / "out" / row["path"]) as img:
            assert img.size == (32, 32) and img.mode == "RGB"
    report = {r["slide_id"]: r for r in json.loads((tmp_path / "out" / "report.json").read_text())}
    assert report["s1"]["status"] == "done" and report["s1"]["kept"] == 8
    assert report["s1"]["mask_source"] in ("s1.geojson", "s1_mask.png")


def test_without_annotation_tissue_detection_warns_and_avoids_glass(tmp_path):
    slides, labels, _ = make_cohort(tmp_path, [("s1", "A", "p1")], annotate="none")
    with pytest.warns(UserWarning, match="no annotation"):
        result = run_extraction(config(slides, labels, None, tmp_path / "out",
                                       sampling=SamplingConfig(patch_size=128, out_size=32, per_slide=100)))
    assert result.ok
    rows = read_manifest(tmp_path / "out")
    assert any(area_inside(int(r["x"]), int(r["y"]), 128, OTHER_TISSUE) > 0.9 for r in rows)
    for r in rows:
        x, y = int(r["x"]), int(r["y"])
        assert area_inside(x, y, 128, TUMOUR) + area_inside(x, y, 128, OTHER_TISSUE) >= 0.9


def test_splits_by_patient_share_no_patient(tmp_path):
    rows = [("a1", "A", "p1"), ("a2", "A", "p1"), ("b1", "B", "p2"), ("b2", "B", "p2"), ("c1", "A", "p3"),
            ("d1", "B", "p4"), ("e1", "A", ""), ("f1", "B", "")]
    slides, labels, ann = make_cohort(tmp_path, rows)
    sampling = SamplingConfig(patch_size=256, out_size=32, per_slide=2, seed=1)
    result = run_extraction(config(slides, labels, ann, tmp_path / "out", sampling=sampling, split=(0.5, 0.25, 0.25)))
    assert result.ok
    manifest = read_manifest(tmp_path / "out")
    group = lambda r: r["patient_id"] or "slide:" + r["slide_id"]  # noqa: E731
    splits_of = {}
    for r in manifest:
        splits_of.setdefault(group(r), set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of.values())
    assert {r["split"] for r in manifest} == {"train", "val", "test"}
    assert len(splits_of) == 6  # four patients and two slides without a patient


def test_same_seed_same_patches_other_seed_other_patches(tmp_path):
    slides, labels, ann = make_cohort(tmp_path, [("s1", "A", "p1")])

    def run(out, seed):
        sampling = SamplingConfig(patch_size=128, out_size=32, per_slide=5, seed=seed)
        assert run_extraction(config(slides, labels, ann, tmp_path / out, sampling=sampling)).ok
        rows = read_manifest(tmp_path / out)
        return rows, [(tmp_path / out / r["path"]).read_bytes() for r in rows]

    a, b, c = run("a", 7), run("b", 7), run("c", 8)
    assert a == b
    assert [(r["x"], r["y"]) for r in a[0]] != [(r["x"], r["y"]) for r in c[0]]


def test_resume_skips_finished_slides_and_redoes_unfinished_ones(tmp_path):
    slides, labels, ann = make_cohort(tmp_path, [("s1", "A", "p1"), ("s2", "B", "p2")])
    out = tmp_path / "out"
    first = run_extraction(config(slides, labels, ann, out))
    assert first.ok
    done_png = next((out / "slides" / "s1" / "patches").iterdir())
    stamp = done_png.stat().st_mtime_ns
    # An interrupted run of s2: its finished folder lost its DONE mark, and a temp folder is left over.
    (out / "slides" / "s2" / "DONE").unlink()
    (out / ".tmp" / "s2" / "patches").mkdir(parents=True)
    (out / ".tmp" / "s2" / "patches" / "junk.png").write_bytes(b"half")
    second = run_extraction(config(slides, labels, ann, out))
    status = {r["slide_id"]: r["status"] for r in second.reports}
    assert status == {"s1": "skipped", "s2": "done"}
    assert done_png.stat().st_mtime_ns == stamp
    assert not (out / ".tmp").exists() and (out / "slides" / "s2" / "DONE").exists()
    assert read_manifest(out) == sorted(read_manifest(out), key=lambda r: r["slide_id"])
    assert len(read_manifest(out)) == first.n_patches == second.n_patches


def test_on_progress_false_stops_after_the_slide_and_a_rerun_finishes(tmp_path):
    """A cancel (the callback returns False) stops before the next slide: the slides done are kept, the
    others are pending, and running again does only those."""
    slides, labels, ann = make_cohort(tmp_path, [("s1", "A", "p1"), ("s2", "B", "p2"), ("s3", "A", "p3")])
    out = tmp_path / "out"
    calls = []

    def on_progress(done, total, metrics):
        calls.append((done, total, metrics["slide_id"]))
        return False

    first = run_extraction(config(slides, labels, ann, out, on_progress=on_progress))
    assert first.stopped and calls == [(1, 3, "s1")]
    assert {r["slide_id"]: r["status"] for r in first.reports} == {"s1": "done", "s2": "pending", "s3": "pending"}
    second = run_extraction(config(slides, labels, ann, out))
    assert not second.stopped
    assert {r["slide_id"]: r["status"] for r in second.reports} == {"s1": "skipped", "s2": "done", "s3": "done"}


def test_resume_with_other_settings_is_refused(tmp_path):
    slides, labels, ann = make_cohort(tmp_path, [("s1", "A", "p1")])
    assert run_extraction(config(slides, labels, ann, tmp_path / "out")).ok
    other = SamplingConfig(patch_size=256, out_size=32, per_slide=8)
    with pytest.raises(ExtractError, match="sampling"):
        run_extraction(config(slides, labels, ann, tmp_path / "out", sampling=other))


def test_bad_inputs_are_reported_per_slide_and_the_others_go_on(tmp_path):
    rows = [("good", "A", "p1"), ("truncated", "A", "p2"), ("corrupt", "A", "p2"), ("badmask", "A", "p3"),
            ("outside", "B", "p4"), ("notumour", "B", "p5")]
    slides, labels, ann = make_cohort(tmp_path, rows)
    labels.write_text(labels.read_text() + "nofile,B,p6\n")
    data = (slides / "truncated.tiff").read_bytes()
    (slides / "truncated.tiff").write_bytes(data[: len(data) // 3])
    # Garbage in the middle of the tile data (level 1, the level these patches are read from): it
    # opens, but reading fails.
    data = bytearray((slides / "corrupt.tiff").read_bytes())
    data[int(len(data) * 0.82):int(len(data) * 0.97)] = b"\xff" * (int(len(data) * 0.97) - int(len(data) * 0.82))
    (slides / "corrupt.tiff").write_bytes(bytes(data))
    (ann / "badmask.geojson").unlink()
    Image.fromarray(np.ones((64, 32), np.uint8)).save(ann / "badmask.png")
    write_geojson(ann / "outside.geojson", Rect(800, 800, 1200, 1100))
    (ann / "notumour.geojson").unlink()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(ann / "notumour_mask.png")
    write_slide(slides / "unlabelled.tiff", 512, 512, tissue=[Rect(0, 0, 256, 256)])

    result = run_extraction(config(slides, labels, ann, tmp_path / "out", workers=2))
    assert not result.ok
    report = {r["slide_id"]: r for r in result.reports}
    assert report["good"]["status"] == "done" and report["good"]["kept"] == 8
    expected = {"truncated": "truncated.tiff", "corrupt": "cannot read region", "badmask": "aspect",
                "outside": "outside the slide",
                "notumour": "no tumour area", "nofile": "no slide file", "unlabelled": "no row in"}
    for sid, text in expected.items():
        assert report[sid]["status"] == "failed", sid
        assert text in report[sid]["error"], (sid, report[sid]["error"])
        assert not (tmp_path / "out" / "slides" / sid).exists()
    assert {r["slide_id"] for r in read_manifest(tmp_path / "out")} == {"good"}
    with open(tmp_path / "out" / "report.csv", newline="") as fh:
        assert {r["slide_id"]: r["status"] for r in csv.DictReader(fh)}["truncated"] == "failed"


def test_stain_normalisation_runs_in_the_pipeline(tmp_path):
    slides, labels, ann = make_cohort(tmp_path, [("s1", "A", "p1")])
    assert run_extraction(config(slides, labels, ann, tmp_path / "plain")).ok
    plain = read_manifest(tmp_path / "plain")
    ref = np.asarray(Image.open(tmp_path / "plain" / plain[0]["path"])).astype(float)
    ref = np.clip(ref * np.array([0.75, 0.95, 1.15]), 0, 255).astype(np.uint8)  # a bluer lab
    Image.fromarray(ref).save(tmp_path / "ref.png")
    for method in ("macenko", "reinhard"):
        out = tmp_path / method
        result = run_extraction(config(slides, labels, ann, out, stain=method, stain_reference=tmp_path / "ref.png"))
        assert result.ok
        rows = read_manifest(out)
        assert [(r["x"], r["y"]) for r in rows] == [(r["x"], r["y"]) for r in plain]
        mean_colour = lambda folder, rs: np.mean(  # noqa: E731
            [np.asarray(Image.open(folder / r["path"])).reshape(-1, 3).mean(0) for r in rs], 0)
        before, after = mean_colour(tmp_path / "plain", plain), mean_colour(out, rows)
        target = ref.reshape(-1, 3).mean(0)
        assert np.linalg.norm(after - target) < np.linalg.norm(before - target), method


def test_labels_csv_errors_name_the_line(tmp_path):
    cases = {
        "slide_id,patient_id\ns1,p1\n": "missing label",
        "slide_id,label\ns1,A\ns2,\n": "line 3",
        "slide_id,label\ns1,A\ns1,B\n": "line 3: slide 's1' is listed again",
        "slide_id,label\n../x,A\n": "line 2",
        "slide_id,label\n": "no slides",
    }
    for text, message in cases.items():
        path = tmp_path / "labels.csv"
        path.write_text(text)
        with pytest.raises(ExtractError, match=message.replace("(", r"\(")):
            read_labels(path)
    path.write_text("slide_id,label\ns1,A\n")
    assert read_labels(path)[0].group == "slide:s1"


@pytest.mark.django_db
def test_command_registers_one_real_image_set_per_split(tmp_path):
    rows = [(f"s{i}", "AB"[i % 2], f"p{i}") for i in range(4)]
    slides, labels, ann = make_cohort(tmp_path, rows)
    out = tmp_path / "out"
    call_command("extract_patches", slides=str(slides), labels=str(labels), annotations=str(ann), out=str(out),
                 patch_size=256, per_slide=2, out_size=32, split="0.5,0.25,0.25", seed=3, register_name="lgg",
                 verbosity=0)
    manifest = read_manifest(out)
    sets = {s.name: s for s in ImageSet.objects.filter(name__startswith="lgg-")}
    assert set(sets) == {"lgg-train", "lgg-val", "lgg-test"}
    for split in ("train", "val", "test"):
        image_set = sets[f"lgg-{split}"]
        expected = [r for r in manifest if r["split"] == split]
        assert image_set.kind == "real" and image_set.generator == "real"
        assert image_set.images.count() == len(expected) > 0
        image = image_set.images.get(original_name=expected[0]["path"])
        assert image.label == expected[0]["label"] and (image.width, image.height) == (32, 32)
        assert image.origin == {"slide_id": expected[0]["slide_id"], "x": int(expected[0]["x"]),
                                "y": int(expected[0]["y"]), "level": int(expected[0]["level"]), "size": 256,
                                "mpp": 0.5}
    # Rerunning resumes (nothing new to do) but refuses to register the same names twice.
    with pytest.raises(CommandError, match="exist already"):
        call_command("extract_patches", slides=str(slides), labels=str(labels), annotations=str(ann), out=str(out),
                     patch_size=256, per_slide=2, out_size=32, split="0.5,0.25,0.25", seed=3, register_name="lgg",
                     verbosity=0)
    assert ImageSet.objects.filter(name__startswith="lgg-").count() == 3


def test_command_exit_status_is_non_zero_when_a_slide_failed(tmp_path, capsys):
    slides, labels, ann = make_cohort(tmp_path, [("s1", "A", "p1")])
    labels.write_text(labels.read_text() + "ghost,B,p2\n")
    argv = ["manage.py", "extract_patches", "--slides", str(slides), "--labels", str(labels),
            "--annotations", str(ann), "--out", str(tmp_path / "out"), "--patch-size", "128", "--per-slide", "3",
            "--out-size", "32", "--verbosity", "0", "--skip-checks"]
    with pytest.raises(SystemExit) as exit_info:
        ManagementUtility(argv).execute()  # as from the shell: CommandError becomes the exit status
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "ghost" in err and "1 slide(s) failed" in err
    assert len(read_manifest(tmp_path / "out")) == 3  # the good slide is extracted all the same


def test_command_succeeds_and_resumes_when_every_slide_is_fine(tmp_path, capsys):
    slides, labels, ann = make_cohort(tmp_path, [("s1", "A", "p1")])
    args = dict(slides=str(slides), labels=str(labels), annotations=str(ann), out=str(tmp_path / "out"),
                patch_size=128, per_slide=3, out_size=32, verbosity=0)
    call_command("extract_patches", **args)  # no CommandError: exit status 0
    call_command("extract_patches", **args)
    assert "3 patches from 1 slides" in capsys.readouterr().out
    assert len(read_manifest(tmp_path / "out")) == 3


@pytest.mark.django_db
def test_registration_is_all_or_nothing(tmp_path, settings):
    from generation.services.patches import patch_image_sets_register
    from readerstudy.services.imagesets import ImageSetError

    rows = [(f"s{i}", "A", f"p{i}") for i in range(3)]
    slides, labels, ann = make_cohort(tmp_path, rows)
    out = tmp_path / "out"
    assert run_extraction(config(slides, labels, ann, out, split=(0.34, 0.33, 0.33))).ok
    manifest = read_manifest(out)
    last = max(manifest, key=lambda r: ("train", "val", "test").index(r["split"]))
    (out / last["path"]).write_bytes(b"not a png")  # the last split registered has a broken file
    with pytest.raises(ImageSetError, match="not a readable image"):
        patch_image_sets_register(out_dir=out, name_prefix="x")
    assert not ImageSet.objects.filter(name__startswith="x-").exists()
    stored = [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]
    assert stored == []  # the sets registered before the failure left no files behind
    (out / last["path"]).unlink()
    with pytest.raises(ImageSetError, match=r"line \d+: patch file .* does not exist"):
        patch_image_sets_register(out_dir=out, name_prefix="x")
