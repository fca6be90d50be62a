"""ProGAN training end to end on a tiny configuration: growth 4 -> 16 px, exact resume mid-fade."""
import csv

import numpy as np
import pytest
import torch
from PIL import Image

from generation.progan.config import ConfigError
from generation.progan.train import train_progan
from generation.training.checkpoint import checkpoint_load
from generation.training.data import DataError

torch.set_num_threads(1)

# tiny preset, 16 images per phase, batch 4: 5 phases (4 stable, 8 fade/stable, 16 fade/stable) x 4 steps.
RUN = dict(preset="tiny", images_per_phase=16, batch_size=4, log_every=1, save_every=1000, device="cpu")


def _metrics(path):
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _write_patches(root, size=16, per_class=6):
    rng = np.random.default_rng(0)
    for label, tint in (("KRAS", (200, 80, 120)), ("WT", (90, 60, 180))):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            noise = rng.integers(0, 60, size=(size, size, 3))
            pixels = np.clip(np.array(tint) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


@pytest.fixture
def data(tmp_path):
    return _write_patches(tmp_path / "patches")


def test_tiny_config_grows_from_4_to_16_pixels(data, tmp_path):
    out = tmp_path / "run"
    result = train_progan(data=data, out=out, sample_every=4, **RUN)
    assert (result.step, result.images_seen, result.resolution, result.alpha) == (20, 80, 16, 1.0)
    rows = _metrics(out / "metrics.csv")
    assert [r["step"] for r in rows] == list(range(1, 21))
    assert [r["resolution"] for r in rows] == [4] * 4 + [8] * 8 + [16] * 8
    # alpha of each step's batch: images seen at its start, into the 16-image fade-in.
    fade_8 = [r["alpha"] for r in rows[4:8]]
    assert fade_8 == pytest.approx([0.0, 0.25, 0.5, 0.75])
    assert [r["alpha"] for r in rows[8:12]] == [1.0] * 4
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["g_loss"]) for r in rows)
    ckpt = checkpoint_load(out, kind="progan")
    assert ckpt["step"] == 20 and ckpt["extra"]["resolution"] == 16 and ckpt["extra"]["classes"] == ["KRAS", "WT"]
    grids = sorted(p.name for p in (out / "grids").iterdir())
    assert grids[0] == "step_0000004_4px.png" and grids[-1] == "step_0000020_16px.png"
    with Image.open(out / "grids" / grids[-1]) as img:  # 2 rows (classes) of 8 samples, 16 px + padding
        assert img.size == (8 * 18 + 2, 2 * 18 + 2)


def _assert_same_tensors(a, b, where):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_tensors(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def test_resume_mid_fade_equals_an_uninterrupted_run(data, tmp_path):
    full, split = tmp_path / "full", tmp_path / "split"
    train_progan(data=data, out=full, total_images=56, **RUN)  # 14 steps: into the 16 px fade-in
    first = train_progan(data=data, out=split, total_images=56, max_steps=6, **RUN)
    assert (first.step, first.images_seen, first.resolution, first.alpha) == (6, 24, 8, 0.25)  # mid-fade
    resumed = train_progan(data=data, out=split, total_images=56, resume=True, **RUN)
    assert resumed.step == 14 and resumed.resolution == 16
    a, b = checkpoint_load(full, kind="progan"), checkpoint_load(split, kind="progan")
    for key in ("model", "ema", "optimizer"):
        _assert_same_tensors(a[key], b[key], key)
    for key in ("discriminator", "d_optimizer", "images_seen", "alpha"):
        _assert_same_tensors(a["extra"][key], b["extra"][key], key)
    drop_time = lambda rows: [{k: v for k, v in r.items() if k not in ("time", "images_per_second")} for r in rows]
    assert drop_time(_metrics(full / "metrics.csv")) == drop_time(_metrics(split / "metrics.csv"))


def test_resume_refuses_another_configuration(data, tmp_path):
    out = tmp_path / "run"
    train_progan(data=data, out=out, max_steps=1, **RUN)
    with pytest.raises(ConfigError, match="images_per_phase_fade is 16 in the checkpoint"):
        train_progan(data=data, out=out, resume=True, **{**RUN, "images_per_phase": 32})
    with pytest.raises(ConfigError, match="preset 'tiny', not 'progan-128'"):
        train_progan(data=data, out=out, resume=True, **{**RUN, "preset": "progan-128"})


def test_patches_that_do_not_fit_the_resolution_are_refused(tmp_path):
    data = _write_patches(tmp_path / "small", size=8)
    with pytest.raises(DataError, match="patches are 8 px"):
        train_progan(data=data, out=tmp_path / "run", **RUN)


def test_larger_patches_are_box_downsampled(tmp_path):
    data = _write_patches(tmp_path / "big", size=32, per_class=2)
    result = train_progan(data=data, out=tmp_path / "run", max_steps=2, **RUN)
    assert result.step == 2


def test_adam_starts_afresh_with_every_phase(data, tmp_path):
    """ProGAN's reference resets both optimisers when a phase begins: the saved Adam states count only
    the steps of the last phase (4 of the 20), and a run stopped at a phase boundary goes on the same."""
    out = tmp_path / "run"
    train_progan(data=data, out=out, **RUN)
    ckpt = checkpoint_load(out, kind="progan")
    for state in (ckpt["optimizer"], ckpt["extra"]["d_optimizer"]):
        assert {int(s["step"]) for s in state["state"].values()} == {4}
    # stopped by the callback at step 8 (the end of the 8 px fade-in), then resumed: the same weights
    stopped = tmp_path / "stopped"
    result = train_progan(data=data, out=stopped, on_progress=lambda step, total, m: step < 8, **RUN)
    assert result.step == 8 and checkpoint_load(stopped)["step"] == 8
    train_progan(data=data, out=stopped, resume=True, **RUN)
    resumed = checkpoint_load(stopped, kind="progan")
    for key, value in ckpt["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
