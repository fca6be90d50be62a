"""Training the diffusion model on the CPU: the tiny model overfits 8 images, the label steers it,
resuming equals an uninterrupted run, micro-batching equals one batch, and bad runs fail clearly."""
import pytest
import torch

from generation.diffusion.config import ConfigError, preset_config
from generation.diffusion.pipeline import DiffusionGenerator
from generation.diffusion.train import TrainOptions, train
from generation.diffusion.unet import DiffusionUNet, count_parameters
from generation.training.checkpoint import checkpoint_load
from generation.training.distributed import DeviceError
from generation.training.logging import metrics_read
from tests.generation.diffusion_helpers import tiny_config, write_patches


def _opts(tmp_path, out="run", **kw):
    base = dict(data=tmp_path / "data", out=tmp_path / out, steps=2, log_every=1, save_every=1000, progress=False)
    return TrainOptions(**{**base, **kw})


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("overfit")
    write_patches(tmp / "data", n=8)
    ckpt = train(tiny_config(), _opts(tmp, steps=30, log_every=5, augment=False))
    return ckpt, metrics_read(tmp / "run" / "metrics.csv")


def test_tiny_model_overfits_eight_images(overfit_run):
    ckpt, rows = overfit_run
    first, last = rows[0]["loss"], min(r["loss"] for r in rows[-2:])
    assert first > 4 * last, [r["loss"] for r in rows]
    assert rows[-1]["step"] == 30 and rows[-1]["images_per_second"] > 0
    saved = checkpoint_load(ckpt, kind="diffusion")
    assert saved["step"] == 30 and saved["config"]["classes"] == ("A", "B")


def test_the_class_label_changes_the_output(overfit_run):
    gen = DiffusionGenerator.from_checkpoint(str(overfit_run[0]), use_ema=False)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    with torch.no_grad():
        a, b = gen.model(x, t, torch.tensor([0])), gen.model(x, t, torch.tensor([1]))
    assert (a - b).abs().mean() > 1e-2
    images = gen.sample(torch.tensor([0, 1]), [torch.Generator().manual_seed(5) for _ in range(2)], sampler="ddim", steps=3)
    assert (images[0] - images[1]).abs().mean() > 1e-2  # same noise, different labels


def test_resume_after_k_steps_equals_an_uninterrupted_run(tmp_path):
    write_patches(tmp_path / "data", n=6)
    cfg = tiny_config(batch_size=4)
    full = checkpoint_load(train(cfg, _opts(tmp_path, "full", steps=4)))
    train(cfg, _opts(tmp_path, "split", steps=2))
    resumed = checkpoint_load(train(cfg, _opts(tmp_path, "split", steps=4, resume=True)))
    assert resumed["step"] == full["step"] == 4
    for part in ("model", "ema"):
        for key, value in full[part].items():
            assert torch.equal(value, resumed[part][key]), (part, key)
    for key, state in full["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], resumed["optimizer"]["state"][key]["exp_avg"])
    rows = metrics_read(tmp_path / "split" / "metrics.csv")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [r["loss"] for r in rows] == [r["loss"] for r in metrics_read(tmp_path / "full" / "metrics.csv")]


def test_micro_batching_matches_one_batch(tmp_path):
    write_patches(tmp_path / "data", n=4)
    train(tiny_config(batch_size=4), _opts(tmp_path, "one", steps=1))
    train(tiny_config(batch_size=4, micro_batch=2), _opts(tmp_path, "micro", steps=1))
    one, micro = (metrics_read(tmp_path / name / "metrics.csv")[0] for name in ("one", "micro"))
    for key in ("loss", "mse", "vb", "grad_norm"):  # same loss and same gradient (its norm, before clipping)
        assert micro[key] == pytest.approx(one[key], rel=1e-5), key


def test_bad_runs_fail_clearly(tmp_path):
    write_patches(tmp_path / "data", n=4)
    train(tiny_config(batch_size=2), _opts(tmp_path, steps=1))
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(tiny_config(batch_size=2), _opts(tmp_path, steps=1))
    with pytest.raises(ConfigError, match="made with preset 'tiny', not 'small-128'"):
        train(preset_config("small-128"), _opts(tmp_path, steps=2, resume=True))
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="--bf16 needs a CUDA GPU"):
            train(tiny_config(), _opts(tmp_path, "gpu", bf16=True))
    with pytest.raises(ConfigError, match="micro_batch 3"):
        tiny_config(batch_size=2, micro_batch=3)
    write_patches(tmp_path / "big", n=2, size=64)
    with pytest.raises(ConfigError, match="64 px but preset 'small-128' is built for 128 px"):
        train(preset_config("small-128"), _opts(tmp_path, "big-run", data=tmp_path / "big"))


def test_preset_sizes():
    for size in (32, 64, 128, 256):
        with torch.device("meta"):
            assert count_parameters(DiffusionUNet(preset_config("tiny", image_size=size, num_classes=4))) < 2_000_000
    with torch.device("meta"):
        adm = DiffusionUNet(preset_config("adm-128", num_classes=2))
    assert 400e6 < count_parameters(adm) < 440e6
    blocks = [type(b).__name__ for b in adm.unet.down_blocks]
    assert blocks == ["ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D", "AttnDownBlock2D", "AttnDownBlock2D",
                      "AttnDownBlock2D"]  # 128, 64 px plain; attention at 32, 16, 8 px
    assert adm.unet.config.resnet_time_scale_shift == "scale_shift" and adm.unet.config.out_channels == 6
    assert adm.unet.class_embedding.num_embeddings == 3  # two classes and the null class
    with pytest.raises(ConfigError, match="preset 'nope'"):
        preset_config("nope")


def test_output_layers_start_at_zero():
    model = DiffusionUNet(tiny_config(num_classes=2))
    out = model(torch.randn(2, 3, 32, 32), torch.tensor([3, 900]), torch.tensor([0, 1]))
    assert out.shape == (2, 6, 32, 32) and out.abs().max() == 0


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from generation.diffusion import diffusion as diffusion_mod
    from generation.training.loop import NonFiniteLossError

    write_patches(tmp_path / "data", n=4)
    real = diffusion_mod.GaussianDiffusion.training_losses
    calls = []

    def poisoned(self, *args, **kwargs):
        calls.append(1)
        terms = real(self, *args, **kwargs)
        if len(calls) == 3:
            terms.loss = terms.loss * float("nan")
        return terms

    monkeypatch.setattr(diffusion_mod.GaussianDiffusion, "training_losses", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 2: training stopped; the last good checkpoint is .*checkpoint.pt"):
        train(tiny_config(batch_size=2), _opts(tmp_path, steps=5, save_every=1))
    kept = checkpoint_load(tmp_path / "run" / "checkpoint.pt")
    assert kept["step"] == 2 and all(torch.isfinite(v).all() for v in kept["model"].values())


def test_on_progress_false_stops_cleanly_and_the_run_resumes_exactly(tmp_path):
    """A callback returning False (a job's cancel) stops after that step with its checkpoint written;
    resuming then gives the uninterrupted run. Every step is reported as (step, total, metrics)."""
    write_patches(tmp_path / "data", n=6)
    cfg = tiny_config(batch_size=4)
    full = checkpoint_load(train(cfg, _opts(tmp_path, "full", steps=4)))
    calls = []

    def on_progress(step, total, metrics):
        calls.append((step, total, sorted(metrics)))
        return step < 2

    stopped = checkpoint_load(train(cfg, _opts(tmp_path, "cut", steps=4, on_progress=on_progress)))
    assert stopped["step"] == 2
    assert [(s, t) for s, t, _ in calls] == [(1, 4), (2, 4)] and "loss" in calls[0][2]
    resumed = checkpoint_load(train(cfg, _opts(tmp_path, "cut", steps=4, resume=True)))
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_micro_batch_auto_on_a_cpu_takes_the_whole_batch(tmp_path):
    write_patches(tmp_path / "data", n=4)
    ckpt = checkpoint_load(train(tiny_config(batch_size=4), _opts(tmp_path, steps=1, micro_batch_auto=True)))
    assert ckpt["config"]["micro_batch"] == 4


def test_paper_defaults_on_the_128_px_presets():
    for name in ("adm-128", "small-128"):
        cfg = preset_config(name)
        assert (cfg.p2_gamma, cfg.p2_k, cfg.grad_clip) == (1.0, 1.0, 0.0), name
    adm = preset_config("adm-128")
    assert adm.batch_size == 256 and adm.micro_batch == 32  # 8 passes of 32 on one 80 GB GPU
    assert preset_config("adm-128", batch_size=16).micro_batch == 16  # a smaller batch caps it
