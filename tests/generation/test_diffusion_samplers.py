"""Samplers: every one returns the right shape, is deterministic for a seed and independent of the
batch; the factory refuses unknown names; guidance needs a model trained with label dropout."""
import pytest
import torch

from generation.diffusion.diffusion import scheduler_kwargs
from generation.diffusion.pipeline import DiffusionGenerator
from generation.diffusion.samplers import SAMPLER_NAMES, sampler_get
from tests.generation.diffusion_helpers import random_checkpoint


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    return DiffusionGenerator.from_checkpoint(str(random_checkpoint(tmp_path_factory.mktemp("s") / "c.pt")))


def _gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_sampler_shape_range_and_determinism(generator, name):
    labels = torch.tensor([0, 1, 1])
    a = generator.sample(labels, _gens([1, 2, 3]), sampler=name, steps=3)
    b = generator.sample(labels, _gens([1, 2, 3]), sampler=name, steps=3)
    assert a.shape == (3, 3, 32, 32) and torch.isfinite(a).all() and a.abs().max() <= 1.0
    assert torch.equal(a, b)
    c = generator.sample(labels, _gens([1, 2, 4]), sampler=name, steps=3)
    assert torch.allclose(a[:2], c[:2], atol=1e-3)  # image i depends on its own seed only
    assert (a[2] - c[2]).abs().mean() > 1e-3
    single = generator.sample(labels[1:2], _gens([2]), sampler=name, steps=3)
    assert torch.allclose(single[0], a[1], atol=1e-3)  # independent of the batch (up to float rounding)


def test_ddpm_with_all_steps_is_the_full_chain(generator):
    calls = []
    fn = generator.model_fn(torch.tensor([0]))

    def counting(x, t):
        calls.append(int(t[0]))
        return fn(x, t)

    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    sampler_get("ddpm")(counting, x, steps=20, schedule=scheduler_kwargs(generator.config),
                        generator=_gens([0]))
    assert calls[0] == 999 and calls[-1] == 0 and len(calls) == 20 and calls == sorted(calls, reverse=True)


def test_unknown_sampler_and_bad_steps(generator):
    with pytest.raises(ValueError, match="sampler 'euler': expected one of ddpm, ddim, dpmsolver\\+\\+"):
        sampler_get("euler")
    with pytest.raises(ValueError, match="steps 0: expected 1 to 1000"):
        generator.sample(torch.tensor([0]), _gens([0]), sampler="ddim", steps=0)
    with pytest.raises(ValueError, match="label index 5"):
        generator.sample(torch.tensor([5]), _gens([0]), sampler="ddim", steps=2)


def test_guidance_needs_label_dropout(generator, tmp_path):
    with pytest.raises(ValueError, match="trained without label dropout"):
        generator.model_fn(torch.tensor([0]), guidance=3.0)
    guided = DiffusionGenerator.from_checkpoint(str(random_checkpoint(tmp_path / "g.pt", cfg_drop=0.1)))
    x = torch.randn(2, 3, 32, 32)
    t = torch.tensor([400, 400])
    labels = torch.tensor([0, 1])
    with torch.no_grad():
        cond = guided.model(x, t, labels)
        uncond = guided.model(x, t, torch.full_like(labels, 2))
        out = guided.model_fn(labels, guidance=3.0)(x, t)
    assert torch.allclose(out[:, :3], uncond[:, :3] + 3.0 * (cond[:, :3] - uncond[:, :3]), atol=1e-4)
    assert torch.allclose(out[:, 3:], cond[:, 3:], atol=1e-4)
