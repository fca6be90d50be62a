"""Generation from a checkpoint: outputs (PNGs, manifest, evaluator .npz, provenance), determinism
across batch sizes, EMA by default, the generator registry, and clear errors leaving nothing behind."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from generation.sampling import generate as gen_mod
from generation.sampling.generate import GenerateError, GenerateRequest, generate, register_generator
from generation.training.checkpoint import checkpoint_save
from tests.generation.diffusion_helpers import random_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.set_num_threads(1)
    return random_checkpoint(tmp_path_factory.mktemp("g") / "checkpoint.pt", classes=("MUT", "WT"))


def _req(ckpt, out, **kw):
    return GenerateRequest(**{"checkpoint": ckpt, "out": out, "sampler": "ddim", "steps": 2, "seed": 3, **kw})


def test_per_label_outputs_in_evaluator_layout(ckpt, tmp_path):
    result = generate(_req(ckpt, tmp_path / "out", per_label=2, batch_size=3))
    assert result.count == 4 and result.npz.name == "samples_4x32x32x3.npz"
    with np.load(result.npz) as npz:
        arr, labels = npz["arr_0"], npz["arr_1"]
    assert arr.dtype == np.uint8 and arr.shape == (4, 32, 32, 3) and labels.tolist() == [0, 0, 1, 1]
    rows = list(csv.DictReader(result.manifest.open()))
    assert [(r["label"], r["index"]) for r in rows] == [("MUT", "0"), ("MUT", "1"), ("WT", "0"), ("WT", "1")]
    for row, pixels in zip(rows, arr):
        assert np.array_equal(np.asarray(Image.open(result.out / row["path"])), pixels)
    prov = json.loads((result.out / "provenance.json").read_text())
    assert prov["generator"] == "diffusion" and prov["checkpoint_step"] == 3 and prov["weights"] == "ema"
    assert (prov["sampler"], prov["steps"], prov["seed"], prov["guidance"]) == ("ddim", 2, 3, 1.0)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_same_seed_same_images_whatever_the_batch(ckpt, tmp_path):
    a = generate(_req(ckpt, tmp_path / "a", n=3, batch_size=1))
    b = generate(_req(ckpt, tmp_path / "b", n=3, batch_size=3))
    c = generate(_req(ckpt, tmp_path / "c", n=3, batch_size=3, seed=4))
    load = lambda r: np.load(r.npz)["arr_0"].astype(int)  # noqa: E731
    assert np.abs(load(a) - load(b)).max() <= 1  # float rounding across batch shapes at most flips a level
    assert np.abs(load(a) - load(c)).mean() > 1
    assert np.load(a.npz)["arr_1"].tolist() == [0, 1, 0]  # spread over all labels


def test_ema_weights_by_default(ckpt, tmp_path):
    ema = generate(_req(ckpt, tmp_path / "ema", n=1, label="WT"))
    raw = generate(_req(ckpt, tmp_path / "raw", n=1, label="WT", use_ema=False))
    assert np.abs(np.load(ema.npz)["arr_0"].astype(int) - np.load(raw.npz)["arr_0"]).mean() > 1
    assert np.load(ema.npz)["arr_1"].tolist() == [1]


def test_bad_requests_are_clear_errors(ckpt, tmp_path):
    with pytest.raises(GenerateError, match="--label 'KRAS': unknown; this checkpoint knows MUT, WT"):
        generate(_req(ckpt, tmp_path / "x", n=1, label="KRAS"))
    with pytest.raises(GenerateError, match="--per-label cannot be combined"):
        generate(_req(ckpt, tmp_path / "x", n=1, per_label=1))
    with pytest.raises(GenerateError, match="give --n"):
        generate(_req(ckpt, tmp_path / "x"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(GenerateError, match="not empty"):
        generate(_req(ckpt, tmp_path / "full", n=1))
    with pytest.raises(ValueError, match="sampler 'plms'"):
        generate(_req(ckpt, tmp_path / "x", n=1, sampler="plms"))
    checkpoint_save(tmp_path / "odd.pt", kind="vae", config={}, model=torch.nn.Linear(1, 1), step=0)
    with pytest.raises(GenerateError, match="no generator registered for kind 'vae'"):
        generate(_req(tmp_path / "odd.pt", tmp_path / "x", n=1))
    assert not (tmp_path / "x").exists()


class _OneShot:
    """A stand-in for a GAN: one forward pass, no sampler options."""

    accepts_sampler_options = False
    classes = ["A", "B"]
    image_size = 8

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = 0, fail_after

    def sample(self, labels, generators):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("out of memory")
        noise = torch.cat([torch.rand(1, 3, 8, 8, generator=g) for g in generators])
        return noise * 2 - 1 + labels.view(-1, 1, 1, 1) * 0


def test_registered_kinds_without_sampler_options(tmp_path, monkeypatch):
    monkeypatch.setitem(gen_mod._REGISTRY, "oneshot", lambda ckpt, device, use_ema: _OneShot())
    checkpoint_save(tmp_path / "gan.pt", kind="oneshot", config={}, model=torch.nn.Linear(1, 1), step=0)
    with pytest.raises(GenerateError, match="oneshot checkpoints take no sampler options; drop --sampler, --steps"):
        generate(_req(tmp_path / "gan.pt", tmp_path / "x", n=1))
    result = generate(GenerateRequest(checkpoint=tmp_path / "gan.pt", out=tmp_path / "ok", per_label=2, seed=1))
    assert result.count == 4 and "sampler" not in result.provenance
    # a failure half-way leaves neither the output folder nor a temporary one
    register_generator("oneshot", lambda ckpt, device, use_ema: _OneShot(fail_after=1))
    with pytest.raises(RuntimeError, match="out of memory"):
        generate(GenerateRequest(checkpoint=tmp_path / "gan.pt", out=tmp_path / "half", n=4, batch_size=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gan.pt", "media", "ok"]


def test_on_progress_false_stops_generation_and_writes_nothing(tmp_path):
    from generation.training.progress import StopRequested
    from tests.generation.diffusion_helpers import random_checkpoint

    ckpt = random_checkpoint(tmp_path / "ckpt.pt")
    seen = []

    def on_progress(done, total, metrics):
        seen.append((done, total))
        return done < 2

    request = GenerateRequest(checkpoint=ckpt, out=tmp_path / "samples", n=4, batch_size=1, steps=2, sampler="ddim",
                              device="cpu", on_progress=on_progress)
    with pytest.raises(StopRequested, match="after 2 of 4 images"):
        generate(request)
    assert seen == [(1, 4), (2, 4)]
    assert not [p.name for p in tmp_path.iterdir() if "samples" in p.name]  # nor its temporary folder
