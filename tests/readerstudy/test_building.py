"""Building balanced studies from image sets: counts, label strata, seed, practice and repeats."""
import io
from collections import Counter

import pytest
from django.core.management import CommandError, call_command

from readerstudy.models import Study, StudyItem
from readerstudy.services.building import SetCount, study_build
from readerstudy.services.studies import StudyError
from tests.factories import make_image_set


@pytest.fixture
def sets(db):
    real = make_image_set(n=16, kind="real", labels=("IDH", "WT"))
    diff = make_image_set(n=10, kind="synthetic", generator="diffusion", labels=("IDH", "WT"))
    gan = make_image_set(n=10, kind="synthetic", generator="progan", labels=("IDH", "WT"))
    return real, diff, gan


def _build(sets, name="b", seed=1, **kwargs):
    real, diff, gan = sets
    return study_build(
        name=name, real=SetCount(real, 8), synthetic=[SetCount(diff, 4), SetCount(gan, 4)], seed=seed, **kwargs
    )


def test_counts_per_set_and_per_label(sets):
    study = _build(sets)
    main = study.items.filter(role=StudyItem.Role.MAIN)
    assert Counter(main.values_list("generator", flat=True)) == {"real": 8, "diffusion": 4, "progan": 4}
    for generator, n in (("real", 8), ("diffusion", 4), ("progan", 4)):
        labels = Counter(main.filter(generator=generator).values_list("label", flat=True))
        assert labels == {"IDH": n // 2, "WT": n // 2}
    # Every item shows its own image; the truth follows the source set.
    assert main.values("image").distinct().count() == 16
    assert set(main.filter(truth="real").values_list("image__image_set__kind", flat=True)) == {"real"}
    assert study.provenance["built_from"][0]["per_label"] == {"IDH": 4, "WT": 4}
    assert study.confidence_labels == ["Very unsure", "Unsure", "Neutral", "Sure", "Very sure"]
    assert study.allow_revision is False and study.state == Study.State.DRAFT


def test_same_seed_same_draw_other_seed_other_draw(sets):
    def draw(study):
        return [(i.image_id, i.role) for i in study.items.order_by("id")]

    a, b, c = _build(sets, "a", seed=1), _build(sets, "b", seed=1), _build(sets, "c", seed=2)
    assert draw(a) == draw(b)
    assert draw(a) != draw(c)


def test_items_are_not_grouped_by_source(sets):
    study = _build(sets, seed=4)
    truths = list(study.items.filter(role=StudyItem.Role.MAIN).order_by("id").values_list("truth", flat=True))
    assert truths != sorted(truths) and truths != sorted(truths, reverse=True)


def test_practice_and_repeats(sets):
    study = _build(sets, practice=4, repeats=3, instructions="Look closely.", allow_revision=True)
    items = study.items.all()
    practice = items.filter(role=StudyItem.Role.PRACTICE)
    assert practice.count() == 4 and Counter(practice.values_list("truth", flat=True)) == {"real": 2, "synthetic": 2}
    main_images = set(items.filter(role=StudyItem.Role.MAIN).values_list("image", flat=True))
    assert not main_images & set(practice.values_list("image", flat=True))  # practice images are unused ones
    repeats = items.filter(role=StudyItem.Role.REPEAT)
    assert repeats.count() == 3
    for rep in repeats:
        assert rep.repeat_of.role == StudyItem.Role.MAIN and rep.image_id == rep.repeat_of.image_id
        assert rep.blinded_file.name != rep.repeat_of.blinded_file.name  # a fresh token, not the same URL
        # ... but the same bytes, as the study's provenance records (readers are told repeats exist).
        with rep.blinded_file.open("rb") as a, rep.repeat_of.blinded_file.open("rb") as b:
            assert a.read() == b.read()
    assert "byte-identical" in study.provenance["repeats_note"]
    assert study.instructions == "Look closely." and study.allow_revision


def test_problems_are_all_reported_and_nothing_is_left(sets, _media_root):
    real, diff, gan = sets
    lopsided = make_image_set(n=15, kind="synthetic", labels=("IDH", "IDH", "WT"))
    before = sorted(p for p in _media_root.rglob("*") if p.is_file())
    with pytest.raises(StudyError) as info:
        study_build(name="x", real=SetCount(diff, 4), synthetic=[SetCount(real, 2), SetCount(gan, 0)])
    message = str(info.value)
    assert f"image set {diff.name!r} is synthetic, not real" in message
    assert f"image set {real.name!r} is real, not synthetic" in message
    assert f"image set {gan.name!r}: count 0 must be at least 1" in message
    with pytest.raises(StudyError, match="16 images asked for, only 15 in the set"):
        study_build(name="x", real=SetCount(real, 8), synthetic=[SetCount(lopsided, 16)])
    with pytest.raises(StudyError, match="not enough images for 20 practice items"):
        _build(sets, practice=20)
    with pytest.raises(StudyError, match="confidence_labels: 2 labels for the 5 levels"):
        _build(sets, confidence_labels=["a", "b"])
    with pytest.raises(StudyError, match="5 repeated items asked for, but the study has only 3"):
        study_build(name="x", real=SetCount(real, 2), synthetic=[SetCount(diff, 1)], repeats=5)
    assert not Study.objects.exists() and not StudyItem.objects.exists()
    assert sorted(p for p in _media_root.rglob("*") if p.is_file()) == before


def test_failure_while_blinding_leaves_no_rows_and_no_files(sets, _media_root, monkeypatch):
    import readerstudy.services.studies as studies

    calls = []
    real_blind = studies.blind_image_bytes

    def flaky(*, data, size=None, harmonisation="none"):
        # The fifth image fails to blind: four blinded files have been written by then.
        calls.append(1)
        if len(calls) == 5:
            raise studies.BlindingError("broken file")
        return real_blind(data=data, size=size, harmonisation=harmonisation)

    monkeypatch.setattr(studies, "blind_image_bytes", flaky)
    before = sorted(p for p in _media_root.rglob("*") if p.is_file())
    with pytest.raises(StudyError, match="broken file"):
        _build(sets)
    assert len(calls) == 5
    assert not Study.objects.exists() and not StudyItem.objects.exists()
    assert sorted(p for p in _media_root.rglob("*") if p.is_file()) == before


def test_a_short_label_gives_all_it_has_and_the_others_share_the_rest(db):
    import random

    from readerstudy.services.building import stratified_sample

    lopsided = make_image_set(n=15, kind="synthetic", labels=("IDH", "IDH", "WT"))  # 10 IDH, 5 WT
    images = list(lopsided.images.all())
    chosen, per_label = stratified_sample(images=images, count=12, rng=random.Random(0))
    assert per_label == {"IDH": 7, "WT": 5}
    assert Counter(img.label for img in chosen) == per_label and len(set(chosen)) == 12
    _, per_label = stratified_sample(images=images, count=7, rng=random.Random(0))
    assert sorted(per_label.values()) == [3, 4]


def test_custom_scale_without_labels_shows_numbers(sets):
    study = _build(sets, confidence_min=0, confidence_max=100)
    assert (study.confidence_min, study.confidence_max, study.confidence_labels) == (0, 100, [])


def test_build_study_command(sets):
    real, diff, gan = sets
    out = io.StringIO()
    call_command(
        "build_study", "--name", "cli", "--real", f"{real.name}:8", "--synthetic", f"{diff.name}:4",
        "--synthetic", f"{gan.pk}:4", "--practice", "2", "--repeats", "2", "--seed", "9", "--open",
        "--confidence-labels", "no idea,guess,sure", "--confidence-max", "3", "--size", "16x16",
        "--harmonisation", "jpeg90", stdout=out,
    )
    study = Study.objects.get(name="cli")
    assert study.harmonisation == "jpeg90" and study.confound_audit["harmonisation"] == "jpeg90"
    assert study.state == Study.State.OPEN and study.confidence_labels == ["no idea", "guess", "sure"]
    assert study.items.count() == 16 + 2 + 2 and study.provenance["blinded_size"] == [16, 16]
    assert "built study 'cli'" in out.getvalue()
    with pytest.raises(CommandError, match="no image set named 'nope'"):
        call_command("build_study", "--name", "x", "--real", "nope:3", "--synthetic", f"{diff.name}:1")
