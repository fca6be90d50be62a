"""Shared training infrastructure: atomic checkpoints with RNG states, EMA, metrics log, grids,
device checks, and the loop's NaN guard."""
import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from generation.training import checkpoint as ckpt_mod
from generation.training.checkpoint import CheckpointError, checkpoint_load, checkpoint_save, rng_state_restore
from generation.training.distributed import DeviceError, DistEnv, device_resolve
from generation.training.ema import EMA
from generation.training.grids import grid_save
from generation.training.logging import MetricsLog
from generation.training.loop import LoopSchedule, NonFiniteLossError, loop_run


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))


def test_checkpoint_round_trip_restores_rng_states(tmp_path):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    ema = EMA(model, 0.5)
    path = checkpoint_save(tmp_path / "c.pt", kind="toy", config={"a": 1}, model=model, ema=ema, optimizer=opt,
                           step=7, extra={"classes": ["x"]})
    expected = (random.random(), np.random.rand(), torch.rand(1))
    ckpt = checkpoint_load(path, kind="toy")
    rng_state_restore(ckpt["rng"])
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])
    assert ckpt["step"] == 7 and ckpt["config"] == {"a": 1} and ckpt["extra"]["classes"] == ["x"]
    fresh = _model()
    fresh.load_state_dict(ckpt["model"])
    for a, b in zip(fresh.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    assert set(ckpt["ema"]) == set(model.state_dict())
    assert ckpt["optimizer"]["state"]


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="c.pt: checkpoint not found"):
        checkpoint_load(tmp_path / "c.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.pt: not a readable checkpoint"):
        checkpoint_load(tmp_path / "bad.pt")
    checkpoint_save(tmp_path / "g.pt", kind="progan", config={}, model=_model(), step=1)
    with pytest.raises(CheckpointError, match="a 'progan' checkpoint, expected 'diffusion'"):
        checkpoint_load(tmp_path / "g.pt", kind="diffusion")


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = checkpoint_save(tmp_path / "run" / "c.pt", kind="toy", config={}, model=_model(), step=1)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        checkpoint_save(path, kind="toy", config={}, model=_model(), step=2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["c.pt"]  # no temporary left behind


def test_ema_follows_its_formula():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, 0.9)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.shadow.weight, 0.9 * start + 0.1 * model.weight)
    assert not ema.shadow.weight.requires_grad
    with pytest.raises(ValueError, match="decay"):
        EMA(model, 1.0)


@pytest.mark.parametrize("name", ["metrics.csv", "metrics.jsonl"])
def test_metrics_log_drops_rows_past_the_resumed_step(tmp_path, name):
    log = MetricsLog(tmp_path / name)
    for step in (10, 20, 30):
        log.log(step, loss=1.0 / step)
    log = MetricsLog(tmp_path / name, resume_step=20)
    log.log(30, loss=0.5, extra=2.0)
    rows = log.read()
    assert [r["step"] for r in rows] == [10, 20, 30]
    assert rows[-1]["loss"] == 0.5 and rows[-1]["extra"] == 2.0 and rows[0]["loss"] == pytest.approx(0.1)
    if name.endswith(".jsonl"):
        assert json.loads((tmp_path / name).read_text().splitlines()[0])["step"] == 10
    with pytest.raises(ValueError, match="csv or .jsonl"):
        MetricsLog(tmp_path / "m.txt")


def test_grid_has_the_expected_layout(tmp_path):
    images = torch.linspace(-1, 1, 6 * 3 * 8 * 8).reshape(6, 3, 8, 8)
    path = grid_save(images, tmp_path / "g" / "grid.png", nrow=3)
    with Image.open(path) as img:
        assert img.size == (3 * 10 + 2, 2 * 10 + 2)


def test_gpu_only_options_on_a_cpu_are_clear_errors():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceError, match="--bf16 needs a CUDA GPU"):
        device_resolve("auto", bf16=True)
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        device_resolve("cuda")
    assert device_resolve("auto").type == "cpu"


def test_nan_loss_stops_the_loop_and_keeps_the_last_good_checkpoint(tmp_path):
    env = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    saved = []

    def save_fn(step):
        saved.append(step)
        path = tmp_path / "checkpoint.pt"
        path.write_text(str(step))
        return path

    losses = [1.0, 0.9, 0.8, float("nan"), 0.5]
    log = MetricsLog(tmp_path / "m.csv")
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 3.*checkpoint.pt"):
        loop_run(step_fn=lambda s: {"loss": torch.tensor(losses[s])}, start_step=0,
                 schedule=LoopSchedule(total_steps=5, log_every=1, save_every=2), env=env, images_per_step=1,
                 metrics_log=log, save_fn=save_fn, progress=False)
    assert saved == [2] and (tmp_path / "checkpoint.pt").read_text() == "2"
    assert [r["step"] for r in log.read()] == [1, 2, 3]
