"""The slide readers, annotations, sampling, stain normalisation and splits of generation.slides,
on small pyramidal TIFF slides written with tifffile and read back through OpenSlide."""
import json
import warnings

import numpy as np
import pytest
from PIL import Image

from generation.slides.annotations import (
    AnnotationError,
    TissueDetectionWarning,
    find_annotation,
    mask_from_geojson,
    mask_from_image,
    mask_from_tissue,
)
from generation.slides.reader import Slide, SlideError
from generation.slides.sampling import (
    BACKGROUND,
    BELOW_TUMOUR_FRACTION,
    BLURRED,
    SamplingConfig,
    SamplingCounts,
    SamplingError,
    sample_patches,
)
from generation.slides.splits import SplitError, parse_fractions, split_groups, split_slides
from generation.slides.stain import StainError, make_normaliser
from generation.slides.synthetic import Rect, write_slide

SIZE = 1024
TUMOUR = Rect(128, 128, 640, 640)
OTHER_TISSUE = Rect(704, 128, 960, 960)  # tissue that is not tumour
SMOOTH = Rect(704, 128, 960, 384)  # featureless ("blurred") stained area
GLASS = Rect(128, 768, 640, 1000)  # empty glass


def area_inside(x, y, size, rect: Rect) -> float:
    """Independent check: the fraction of a patch's area inside a rectangle."""
    w = max(0, min(x + size, rect.x1) - max(x, rect.x0))
    h = max(0, min(y + size, rect.y1) - max(y, rect.y0))
    return w * h / size**2


def geojson(path, *rings_list, kind="FeatureCollection"):
    features = [{"type": "Feature", "properties": {"classification": {"name": "Tumor"}},
                 "geometry": {"type": "Polygon", "coordinates": rings}} for rings in rings_list]
    data = {"type": "FeatureCollection", "features": features} if kind == "FeatureCollection" else features
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    return write_slide(tmp_path_factory.mktemp("slides") / "s.tiff", SIZE, SIZE, tissue=[TUMOUR, OTHER_TISSUE],
                       downsamples=(1, 2), mpp=0.5)


# -- reader --------------------------------------------------------------------------------------------
def test_reader_opens_a_pyramidal_tiff_through_openslide(slide_path):
    with Slide(slide_path) as slide:
        assert slide.vendor == "generic-tiff"
        assert slide.dimensions == (SIZE, SIZE)
        assert slide.level_dimensions == ((SIZE, SIZE), (SIZE // 2, SIZE // 2))
        assert slide.mpp == pytest.approx(0.5)
        assert [slide.level_for_downsample(d) for d in (1, 1.5, 2, 4)] == [0, 0, 1, 1]
        tumour = slide.read_region(200, 200, 0, (64, 64)).reshape(-1, 3).mean(axis=0)
        glass = slide.read_region(200, 800, 1, (32, 32)).reshape(-1, 3).mean(axis=0)
        assert tumour[1] < 170 and tumour[0] > tumour[1]  # pink/purple
        assert glass.min() > 230  # white
        thumb, dx, dy = slide.thumbnail(128)
        assert thumb.shape == (128, 128, 3) and dx == dy == SIZE / 128
        # The thumbnail shows the tumour where the slide has it.
        assert thumb[20:70, 20:70].mean() < thumb[100:125, 20:70].mean() - 30


def test_reader_refuses_a_file_that_is_not_a_slide(tmp_path):
    bad = tmp_path / "bad.svs"
    bad.write_bytes(b"not a slide")
    with pytest.raises(SlideError, match="bad.svs"):
        Slide(bad)
    with pytest.raises(SlideError, match="no such slide"):
        Slide(tmp_path / "missing.svs")


def test_slide_without_resolution_has_no_mpp(tmp_path):
    path = write_slide(tmp_path / "n.tiff", 512, 512, tissue=[Rect(0, 0, 512, 512)], mpp=None)
    with Slide(path) as slide:
        assert slide.mpp is None


# -- annotations -------------------------------------------------------------------------------------------
def test_geojson_polygon_with_hole_and_multipolygon(tmp_path):
    outer, hole = Rect(100, 100, 500, 500), Rect(200, 200, 300, 300)
    path = tmp_path / "a.geojson"
    parts = [[Rect(600, 600, 700, 700).polygon()], [Rect(800, 0, 900, 50).polygon()]]
    multi = {"type": "MultiPolygon", "coordinates": parts}
    features = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [outer.polygon(), hole.polygon()]}},
        {"type": "Feature", "geometry": multi},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]}},  # ignored
    ]
    path.write_text(json.dumps(features))  # QuPath's "export as list of features"
    mask = mask_from_geojson(path, (SIZE, SIZE), downsample=4)
    assert mask.mask.shape == (256, 256) and mask.downsample_x == 4
    expected = (400 * 400 - 100 * 100 + 100 * 100 + 100 * 50) / SIZE**2
    assert mask.area_fraction == pytest.approx(expected, rel=0.02)
    centre = lambda x, y: bool(mask.mask[int(y / 4), int(x / 4)])  # noqa: E731
    assert centre(150, 150) and not centre(250, 250) and centre(650, 650) and centre(850, 25) and not centre(50, 50)


def test_geojson_outside_the_slide_is_an_error(tmp_path):
    path = geojson(tmp_path / "o.geojson", [Rect(900, 900, 1500, 1100).polygon()])
    with pytest.raises(AnnotationError, match="outside the slide"):
        mask_from_geojson(path, (SIZE, SIZE), downsample=8)


def test_geojson_malformed_names_the_file(tmp_path):
    path = tmp_path / "m.geojson"
    path.write_text("{not json")
    with pytest.raises(AnnotationError, match="m.geojson"):
        mask_from_geojson(path, (SIZE, SIZE), downsample=8)


def test_mask_image_at_any_downsample_and_aspect_check(tmp_path):
    arr = np.zeros((SIZE // 16, SIZE // 16), np.uint8)
    arr[8:40, 8:40] = 255
    Image.fromarray(arr).save(tmp_path / "s_mask.png")
    mask = mask_from_image(tmp_path / "s_mask.png", (SIZE, SIZE))
    assert mask.downsample_x == mask.downsample_y == 16
    frac = mask.fractions(np.array([128, 600, 700]), np.array([128, 128, 700]), 128)
    assert frac.tolist() == [1.0, pytest.approx(40 / 128), 0.0]
    Image.fromarray(np.zeros((64, 32), np.uint8)).save(tmp_path / "wrong.png")
    with pytest.raises(AnnotationError, match="aspect"):
        mask_from_image(tmp_path / "wrong.png", (SIZE, SIZE))
    # Rounding of one pixel is not an aspect error.
    Image.fromarray(np.zeros((33, 32), np.uint8)).save(tmp_path / "round.png")
    mask_from_image(tmp_path / "round.png", (SIZE, SIZE))


def test_find_annotation_by_slide_id(tmp_path):
    assert find_annotation(tmp_path, "s") is None
    (tmp_path / "s.geojson").write_text("[]")
    assert find_annotation(tmp_path, "s").name == "s.geojson"
    (tmp_path / "s_mask.png").write_bytes(b"")
    with pytest.raises(AnnotationError, match="several annotations"):
        find_annotation(tmp_path, "s")


def test_tissue_detection_finds_tissue_and_warns(slide_path):
    with Slide(slide_path) as slide:
        thumb, dx, dy = slide.thumbnail(128)
    with pytest.warns(TissueDetectionWarning):
        mask = mask_from_tissue(thumb, dx, dy, slide_name="s")
    fr = mask.fractions(np.array([256, 768, 256]), np.array([256, 256, 800]), 64)
    assert fr[0] == 1.0 and fr[1] == 1.0 and fr[2] == 0.0  # tumour, other tissue, glass


# -- sampling ----------------------------------------------------------------------------------------------
def test_patches_come_only_from_the_annotated_tumour(slide_path, tmp_path):
    path = geojson(tmp_path / "s.geojson", [TUMOUR.polygon()])
    config = SamplingConfig(patch_size=128, out_size=32, per_slide=50, seed=3)
    with Slide(slide_path) as slide:
        mask = mask_from_geojson(path, slide.dimensions, downsample=8)
        counts = SamplingCounts()
        patches = list(sample_patches(slide, mask, config, slide_id="s", counts=counts))
    assert 9 <= len(patches) <= 16 and counts.kept == len(patches)
    for p in patches:
        assert area_inside(p.x, p.y, 128, TUMOUR) >= 0.9
        assert p.image.shape == (32, 32, 3) and p.level == 1 and p.size == 128
    boxes = {(p.x // 128, p.y // 128) for p in patches}
    assert len(boxes) == len(patches)  # grid cells: never overlapping
    xs = sorted({p.x for p in patches})
    assert all(b - a >= 128 for a, b in zip(xs, xs[1:]))


def test_sampling_is_seeded_and_limited_per_slide(slide_path, tmp_path):
    path = geojson(tmp_path / "s.geojson", [TUMOUR.polygon()])

    def run(seed, n):
        with Slide(slide_path) as slide:
            mask = mask_from_geojson(path, slide.dimensions, downsample=8)
            config = SamplingConfig(patch_size=96, out_size=32, per_slide=n, seed=seed)
            return list(sample_patches(slide, mask, config, slide_id="s", counts=SamplingCounts()))

    a, b, c = run(1, 5), run(1, 5), run(2, 5)
    assert len(a) == 5
    assert [(p.x, p.y) for p in a] == [(p.x, p.y) for p in b]
    assert all(np.array_equal(p.image, q.image) for p, q in zip(a, b))
    assert [(p.x, p.y) for p in a] != [(p.x, p.y) for p in c]


def test_background_and_blurred_patches_are_rejected_with_reasons(tmp_path):
    slide_path = write_slide(tmp_path / "b.tiff", SIZE, SIZE, tissue=[TUMOUR], smooth=[SMOOTH])
    path = geojson(tmp_path / "b.geojson", [TUMOUR.polygon()], [SMOOTH.polygon()], [GLASS.polygon()])
    config = SamplingConfig(patch_size=128, out_size=64, per_slide=100, seed=0)
    with Slide(slide_path) as slide:
        mask = mask_from_geojson(path, slide.dimensions, downsample=8)
        counts = SamplingCounts()
        patches = list(sample_patches(slide, mask, config, slide_id="b", counts=counts))
    assert counts.rejected[BACKGROUND] >= 3 and counts.rejected[BLURRED] >= 1
    assert counts.rejected[BELOW_TUMOUR_FRACTION] > 0
    assert patches and all(area_inside(p.x, p.y, 128, TUMOUR) >= 0.9 for p in patches)
    assert counts.candidates == counts.kept + counts.rejected[BACKGROUND] + counts.rejected[BLURRED]


def test_patch_size_in_microns_uses_the_mpp(slide_path, tmp_path):
    path = geojson(tmp_path / "s.geojson", [TUMOUR.polygon()])
    with Slide(slide_path) as slide:
        mask = mask_from_geojson(path, slide.dimensions, downsample=8)
        config = SamplingConfig(patch_microns=100, out_size=50, per_slide=3)  # 100 um at 0.5 um/px = 200 px
        patches = list(sample_patches(slide, mask, config, slide_id="s", counts=SamplingCounts()))
    assert [p.size for p in patches] == [200, 200, 200] and patches[0].image.shape == (50, 50, 3)
    no_mpp = write_slide(tmp_path / "n.tiff", 512, 512, tissue=[Rect(0, 0, 512, 512)], mpp=None)
    with Slide(no_mpp) as slide, pytest.raises(SamplingError, match="microns-per-pixel"):
        list(sample_patches(slide, mask, config, slide_id="n", counts=SamplingCounts()))


def test_empty_tumour_area_is_an_error(slide_path, tmp_path):
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "empty.png")
    with Slide(slide_path) as slide:
        mask = mask_from_image(tmp_path / "empty.png", slide.dimensions)
        with pytest.raises(SamplingError, match="no tumour area"):
            list(sample_patches(slide, mask, SamplingConfig(patch_size=128), slide_id="s", counts=SamplingCounts()))


def test_sampling_config_rejects_nonsense():
    with pytest.raises(SamplingError, match="tumour fraction"):
        SamplingConfig(tumour_fraction=1.5)
    with pytest.raises(SamplingError, match="per slide"):
        SamplingConfig(per_slide=0)


# -- stain normalisation ---------------------------------------------------------------------------------------
def _tissue_patch(tint):
    rng = np.random.default_rng(0)
    base = rng.random((64, 64, 1)) * 0.6 + 0.2
    he = np.where(base > 0.5, np.array([120, 60, 150]), np.array([225, 150, 195])) * (0.85 + 0.3 * base)
    return np.clip(he * np.array(tint), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("method", ["macenko", "reinhard"])
def test_stain_normalisation_moves_colour_towards_the_reference(method):
    reference = _tissue_patch((0.8, 0.9, 1.1))  # bluish stain
    patch = _tissue_patch((1.1, 0.9, 0.8))  # reddish stain
    out = make_normaliser(method, reference)(patch)
    assert out.shape == patch.shape and out.dtype == np.uint8
    mean = lambda a: a.reshape(-1, 3).astype(float).mean(axis=0)  # noqa: E731
    assert np.linalg.norm(mean(out) - mean(reference)) < 0.5 * np.linalg.norm(mean(patch) - mean(reference))


def test_stain_method_must_be_known():
    with pytest.raises(StainError, match="vahadane"):
        make_normaliser("vahadane", _tissue_patch((1, 1, 1)))


# -- splits ------------------------------------------------------------------------------------------------------
def test_split_by_patient_fractions_disjoint_and_seeded():
    groups = [f"p{i}" for i in range(100)]
    a = split_groups(groups, (0.8, 0.1, 0.1), seed=5)
    assert sorted(a) == sorted(groups)
    assert [list(a.values()).count(s) for s in ("train", "val", "test")] == [80, 10, 10]
    assert a == split_groups(list(reversed(groups)), (0.8, 0.1, 0.1), seed=5)
    assert a != split_groups(groups, (0.8, 0.1, 0.1), seed=6)


def test_slides_of_one_patient_share_a_split():
    patients = {f"s{i}": f"patient:p{i // 3}" for i in range(30)}  # three slides per patient
    splits = split_slides(patients, (0.6, 0.2, 0.2), seed=0)
    for p in set(patients.values()):
        assert len({splits[s] for s, q in patients.items() if q == p}) == 1
    assert set(splits.values()) == {"train", "val", "test"}


def test_small_cohorts_still_fill_every_split():
    a = split_groups(["a", "b", "c"], (0.8, 0.1, 0.1), seed=0)
    assert sorted(a.values()) == ["test", "train", "val"]


def test_split_fractions_are_parsed_and_checked():
    assert parse_fractions("0.7,0.2,0.1") == (0.7, 0.2, 0.1)
    for bad in ("0.8,0.1", "0.8,0.3,0.1", "a,b,c", "1.2,-0.1,-0.1"):
        with pytest.raises(SplitError):
            parse_fractions(bad)


def test_blank_slide_has_no_tissue_and_warn_false_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mask = mask_from_tissue(np.full((8, 8, 3), 240, np.uint8), 4.0, 4.0, warn=False)
    assert mask.area_fraction == 0.0
