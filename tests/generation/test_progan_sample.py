"""Sampling a ProGAN checkpoint through `generate` / `manage.py generate_images`: rebuilt from the
checkpoint alone, per label, deterministic for a seed, sampler options refused, image set registered."""
import csv

import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command
from PIL import Image

from generation.progan.sample import ProGANSampler, SamplerOptionError, progan_generator_load
from generation.progan.train import train_progan
from generation.sampling.generate import GenerateError, GenerateRequest, generate
from generation.training.checkpoint import CheckpointError, checkpoint_load
from tests.generation.test_progan_train import _write_patches

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("progan")
    data = _write_patches(root / "patches")
    result = train_progan(data=data, out=root / "run", preset="tiny", images_per_phase=8, batch_size=4,
                          sample_every=0, device="cpu")
    assert result.resolution == 16
    return root / "run" / "checkpoint.pt"


def _generators(seed, n):
    return [torch.Generator().manual_seed(seed * 1000 + i) for i in range(n)]


def test_sampler_is_deterministic_and_the_label_changes_the_image(checkpoint):
    s = ProGANSampler(checkpoint)
    assert (s.classes, s.image_size, s.accepts_sampler_options) == (["KRAS", "WT"], 16, False)
    labels = torch.tensor([0, 1, 0])
    a = s.sample(labels, _generators(1, 3))
    assert a.shape == (3, 3, 16, 16) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, s.sample(labels, _generators(1, 3)))
    # Image i depends on its own generator only: batch of one gives the same image.
    torch.testing.assert_close(s.sample(labels[1:2], _generators(1, 3)[1:2]), a[1:2], atol=1e-5, rtol=1e-5)
    other = s.sample(torch.tensor([1, 0, 1]), _generators(1, 3))  # same latents, other labels
    assert all((other[i] - a[i]).abs().mean() > 1e-3 for i in range(3))


def test_generate_writes_pngs_manifest_and_npz_per_label(checkpoint, tmp_path):
    req = dict(checkpoint=checkpoint, per_label=3, seed=4, batch_size=2, device="cpu")
    result = generate(GenerateRequest(out=tmp_path / "a", **req))
    assert result.count == 6 and result.provenance["generator"] == "progan"
    with open(result.manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == ["KRAS"] * 3 + ["WT"] * 3
    npz = np.load(result.npz)
    assert npz["arr_0"].shape == (6, 16, 16, 3) and npz["arr_0"].dtype == np.uint8
    assert npz["arr_1"].tolist() == [0, 0, 0, 1, 1, 1]
    with Image.open(tmp_path / "a" / rows[0]["path"]) as img:
        assert np.array_equal(np.asarray(img), npz["arr_0"][0])
    # Same seed, other batch size: the same images; another seed: others.
    again = np.load(generate(GenerateRequest(out=tmp_path / "b", **{**req, "batch_size": 5})).npz)
    assert np.abs(again["arr_0"].astype(int) - npz["arr_0"].astype(int)).max() <= 1
    other = np.load(generate(GenerateRequest(out=tmp_path / "c", **{**req, "seed": 5})).npz)
    assert not np.array_equal(other["arr_0"], npz["arr_0"])


def test_generate_refuses_sampler_options_for_progan(checkpoint, tmp_path):
    with pytest.raises(GenerateError, match="progan checkpoints take no sampler options; drop --sampler, --steps"):
        generate(GenerateRequest(checkpoint=checkpoint, out=tmp_path / "x", n=2, sampler="ddim", steps=10, device="cpu"))
    assert not (tmp_path / "x").exists()
    with pytest.raises(CommandError, match="take no sampler options; drop --guidance"):
        call_command("generate_images", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "y"), "--n", "2",
                     "--guidance", "2.0", "--device", "cpu")
    with pytest.raises(SamplerOptionError, match="--eta: not applicable to a ProGAN checkpoint"):
        ProGANSampler(checkpoint).sample(torch.tensor([0]), _generators(0, 1), eta=0.5)


@pytest.mark.django_db
def test_generate_images_command_registers_a_progan_image_set(checkpoint, tmp_path):
    from readerstudy.models import ImageSet

    call_command("generate_images", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "set"),
                 "--per-label", "2", "--seed", "3", "--device", "cpu", "--register-name", "progan-demo")
    image_set = ImageSet.objects.get(name="progan-demo")
    assert (image_set.kind, image_set.generator) == ("synthetic", "progan")
    assert image_set.provenance["checkpoint_step"] == checkpoint_load(checkpoint)["step"]
    assert sorted(image_set.images.values_list("label", flat=True)) == ["KRAS", "KRAS", "WT", "WT"]
    assert set(image_set.images.values_list("width", flat=True)) == {16}


def test_generator_rebuilt_from_the_ema_weights(checkpoint):
    ckpt = checkpoint_load(checkpoint, kind="progan")
    g, cfg, depth, alpha, classes = progan_generator_load(ckpt)
    assert (cfg.preset, depth, alpha, classes) == ("tiny", 2, 1.0, ["KRAS", "WT"])
    for name, value in g.state_dict().items():
        assert torch.equal(value, ckpt["ema"][name])
    raw, _, _, _, _ = progan_generator_load(ckpt, use_ema=False)
    assert any(not torch.equal(v, ckpt["ema"][k]) for k, v in raw.state_dict().items())
    ckpt["kind"] = "diffusion"
    with pytest.raises(CheckpointError, match="expected 'progan'"):
        progan_generator_load(ckpt)
    with pytest.raises(ValueError, match="label index 2: the checkpoint has 2 classes"):
        ProGANSampler(checkpoint).sample(torch.tensor([2]), _generators(0, 1))
