"""Patch datasets: manifest or class folders, the checks on bad data, deterministic batches, augmentation."""
import pytest
import torch

from generation.training.data import (
    DataError, PatchDataset, StepBatchSampler, augment_dihedral, make_loader, step_generator,
)
from tests.generation.diffusion_helpers import write_patches


def test_class_subfolders_give_sorted_labels(tmp_path):
    ds = PatchDataset(write_patches(tmp_path / "d", n=6, labels=("MUT", "WT")))
    assert ds.classes == ["MUT", "WT"] and len(ds) == 6 and ds.image_size == 32
    image, label = ds[5]  # records are ordered by class folder, then name
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32) and ds.classes[label] == "WT"
    assert ds.class_counts() == {"MUT": 3, "WT": 3}


def test_manifest_with_split(tmp_path):
    root = write_patches(tmp_path / "d", n=8, manifest=True, split=True)
    assert len(PatchDataset(root)) == 8
    assert len(PatchDataset(root, split="train")) == 6
    with pytest.raises(DataError, match="split 'test'"):
        PatchDataset(root, split="test")


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        PatchDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        PatchDataset(tmp_path / "empty")


def test_manifest_missing_column_and_empty_label(tmp_path):
    root = write_patches(tmp_path / "d", n=4, manifest=True)
    (root / "manifest.csv").write_text("file,label\np000.png,A\n")
    with pytest.raises(DataError, match="missing column.*path"):
        PatchDataset(root)
    (root / "manifest.csv").write_text("path,label\np000.png,A\np001.png,\n")
    with pytest.raises(DataError, match="row 3: empty 'label'"):
        PatchDataset(root)


def test_unreadable_images_are_skipped_and_counted_up_to_a_threshold(tmp_path):
    root = write_patches(tmp_path / "d", n=8)
    (root / "A" / "broken.png").write_bytes(b"not a png")
    ds = PatchDataset(root, max_bad_fraction=0.2)
    assert len(ds) == 8 and len(ds.skipped) == 1 and "broken.png" in str(ds.skipped[0][0])
    with pytest.raises(DataError, match=r"1 of 9 images unreadable.*broken.png"):
        PatchDataset(root, max_bad_fraction=0.05)


def test_mixed_sizes_are_an_error_naming_a_file(tmp_path):
    root = write_patches(tmp_path / "d", n=6)
    write_patches(tmp_path / "small", n=1, size=48)
    (tmp_path / "small" / "A" / "p000.png").rename(root / "A" / "odd.png")
    with pytest.raises(DataError, match=r"mixed image sizes.*odd.png is 48x48"):
        PatchDataset(root)


def test_unknown_labels_against_given_classes(tmp_path):
    root = write_patches(tmp_path / "d", n=4, labels=("A", "C"))
    with pytest.raises(DataError, match=r"unknown label\(s\) \['C'\]"):
        PatchDataset(root, classes=["A", "B"])
    assert PatchDataset(root, classes=["A", "B", "C"]).class_to_index == {"A": 0, "B": 1, "C": 2}


def test_batches_depend_only_on_seed_and_step():
    full = StepBatchSampler(10, batch_size=4, seed=3)
    it = iter(full)
    stream = [next(it) for _ in range(6)]
    resumed = iter(StepBatchSampler(10, batch_size=4, seed=3, start_step=4))
    assert [next(resumed), next(resumed)] == stream[4:6]
    # each epoch of 10 positions is a permutation: steps 0..4 (20 positions) visit every index twice
    flat = sum(stream[:5], [])
    assert sorted(flat) == sorted(list(range(10)) * 2)
    # two ranks split the global batch without overlap
    r0 = StepBatchSampler(10, batch_size=2, seed=3, rank=0, world_size=2).indices(0)
    r1 = StepBatchSampler(10, batch_size=2, seed=3, rank=1, world_size=2).indices(0)
    assert r0 + r1 == stream[0]


def test_loader_resumes_mid_stream(tmp_path):
    ds = PatchDataset(write_patches(tmp_path / "d", n=6))
    a = iter(make_loader(ds, batch_size=4, seed=1))
    batches = [next(a) for _ in range(3)]
    b = iter(make_loader(ds, batch_size=4, seed=1, start_step=2))
    images, labels = next(b)
    assert torch.equal(images, batches[2][0]) and torch.equal(labels, batches[2][1])


def test_dihedral_augmentation_is_one_of_eight_and_seeded():
    x = torch.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    out = augment_dihedral(x, step_generator(0, 5))
    assert torch.equal(out, augment_dihedral(x, step_generator(0, 5)))
    variants = [torch.rot90(v, k, dims=(-2, -1)) for v in (x[0], x[0].flip(-1)) for k in range(4)]
    assert any(torch.equal(out[0], v) for v in variants)
    seen = {tuple(augment_dihedral(x[:1], step_generator(0, s))[0, 0].flatten().tolist()) for s in range(80)}
    assert len(seen) == 8
