"""Both trainers under `torchrun` with two CPU processes (gloo): `manage.py train_diffusion` (DDP) and
`manage.py train_progan` (gradients averaged by hand).

What users rely on: the job exits 0; rank 0 alone writes one checkpoint, one config and one metrics
log (one row per step, no duplicates); steps and images seen count the global batch; and the
checkpoint is the data-parallel result, i.e. the ranks stayed in lockstep. The trainers give each rank
its own slice of the global batch and its own noise (functions of (seed, step, rank)), so a 2-process
run does NOT equal a 1-process run with the same global batch; the expected weights come from a
single-process replay of both ranks' steps (tests/generation/distributed_helpers.py), which must
match, and must differ from the replay that drops rank 1's gradients (so the check can fail).
"""
import csv

import pytest
import torch
import torch.distributed as dist

from generation.training.checkpoint import checkpoint_load
from tests.generation.diffusion_helpers import write_patches
from tests.generation.distributed_helpers import (
    diffusion_reference,
    max_abs_difference,
    progan_reference,
    share_differing,
    torchrun_manage,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                       reason="torch.distributed with the gloo backend is not available"),
]

SEED = 3
# Float reduction order differs between the ranks' all-reduce and the replay's single sum. Adam divides
# each gradient by its own running size, so in the few weights whose gradient nearly cancels that noise
# becomes visible: on one AMD EPYC machine 39 of 1.15 M weights differed by more than 1e-6 (the largest
# by 2.2e-5); on another the runs were bit-identical. Ranks that diverged would move most weights by
# about the learning rate.
ATOL = 1e-4
NOISY_SHARE = 1e-4  # at most this share of the weights may differ by more than NOISE
NOISE = 1e-6
SENSITIVE = 1e-3  # dropping rank 1's gradient moves the weights by far more than ATOL


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _assert_close(saved: dict, module, what: str) -> None:
    diff = max_abs_difference(saved, module)
    assert diff <= ATOL, f"{what}: max |checkpoint - data-parallel replay| = {diff:.3g} > {ATOL} (ranks diverged?)"
    share = share_differing(saved, module, above=NOISE)
    assert share <= NOISY_SHARE, f"{what}: {share:.2%} of the weights differ from the replay by more than {NOISE}"


def _assert_differs(saved: dict, module, what: str) -> None:
    diff = max_abs_difference(saved, module)
    assert diff > SENSITIVE, f"{what}: rank 1's gradient changed the weights by only {diff:.3g}; the check is blind"


def _assert_ran(proc):
    assert proc.returncode == 0, f"torchrun exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def diffusion_run(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ddp_diffusion")
    data = write_patches(root / "data", n=8, size=32)
    out = root / "run"
    proc = torchrun_manage(
        "train_diffusion", "--data", str(data), "--out", str(out), "--preset", "tiny", "--device", "cpu",
        # 4 images per rank in 2 micro-batches of 2: no_sync around the first, all-reduce in the second
        "--steps", "3", "--batch-size", "8", "--micro-batch", "2", "--lr", "1e-3", "--ema-decay", "0.5", "--seed", str(SEED),
        "--log-every", "1", "--save-every", "2", "--no-progress",
    )
    return data, out, proc


@pytest.fixture(scope="module")
def progan_run(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ddp_progan")
    data = write_patches(root / "data", n=12, size=16)
    out = root / "run"
    # 4 px stable (8 images), 8 px fade-in (8), 8 px stable (8); 2 images per rank per step -> 6 steps.
    proc = torchrun_manage(
        "train_progan", "--data", str(data), "--out", str(out), "--preset", "tiny", "--image-size", "8",
        "--images-per-phase-fade", "8", "--images-per-phase-stable", "8", "--batch-sizes", "2",
        "--ema-decay", "0.5", "--device", "cpu", "--seed", str(SEED), "--log-every", "1", "--sample-every", "0",
        "--no-progress",
    )
    return data, out, proc


# --- diffusion (DistributedDataParallel) -------------------------------------------------------------

def test_diffusion_two_processes_write_one_checkpoint_and_log(diffusion_run):
    _, out, proc = diffusion_run
    _assert_ran(proc)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "metrics.csv"]
    assert [int(r["step"]) for r in _rows(out / "metrics.csv")] == [1, 2, 3]  # rank 0 only: no duplicate rows
    assert proc.stdout.count("checkpoint ") == 1  # only rank 0 reports
    assert checkpoint_load(out / "checkpoint.pt", kind="diffusion")["step"] == 3


def test_diffusion_two_processes_equal_the_data_parallel_replay(diffusion_run):
    """Global batch 8 = 4 per rank in micro-batches of 2; the checkpoint holds the mean-gradient update of
    both ranks' halves, computed in one process on whole batches: micro-batching changes nothing."""
    data, out, proc = diffusion_run
    _assert_ran(proc)
    ckpt = checkpoint_load(out / "checkpoint.pt", kind="diffusion")
    assert (ckpt["config"]["batch_size"], ckpt["config"]["micro_batch"]) == (8, 2)
    model, ema = diffusion_reference(data, ckpt, seed=SEED, steps=3, world_size=2)
    _assert_close(ckpt["model"], model, "model")
    _assert_close(ckpt["ema"], ema, "EMA")
    only_rank0, _ = diffusion_reference(data, ckpt, seed=SEED, steps=3, world_size=2, ranks_in_gradient=1)
    _assert_differs(ckpt["model"], only_rank0, "model")


def test_diffusion_batch_not_divisible_by_processes_is_a_clear_error(tmp_path):
    data = write_patches(tmp_path / "data", n=4, size=32)
    proc = torchrun_manage("train_diffusion", "--data", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny",
                           "--device", "cpu", "--steps", "1", "--batch-size", "3", "--no-progress")
    assert proc.returncode != 0
    assert "batch_size 3 is not divisible by the 2 processes" in proc.stdout + proc.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


# --- ProGAN (hand-averaged gradients) ----------------------------------------------------------------

def test_progan_two_processes_write_one_checkpoint_and_log(progan_run):
    _, out, proc = progan_run
    _assert_ran(proc)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "metrics.csv"]
    rows = _rows(out / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 7))
    # alpha of each step's batch: images seen at its start (4 per step, both ranks) into the 8-image fade-in
    assert [(float(r["resolution"]), float(r["alpha"])) for r in rows] == [
        (4, 1.0), (4, 1.0), (8, 0.0), (8, 0.5), (8, 1.0), (8, 1.0)]
    ckpt = checkpoint_load(out / "checkpoint.pt", kind="progan")
    assert (ckpt["step"], ckpt["extra"]["images_seen"], ckpt["extra"]["resolution"]) == (6, 24, 8)
    assert "step 6, 24 images, 8 px" in proc.stdout


def test_progan_two_processes_equal_the_data_parallel_replay(progan_run):
    data, out, proc = progan_run
    _assert_ran(proc)
    ckpt = checkpoint_load(out / "checkpoint.pt", kind="progan")
    G, D, ema = progan_reference(data, ckpt, seed=SEED, world_size=2)
    _assert_close(ckpt["model"], G, "generator")
    _assert_close(ckpt["extra"]["discriminator"], D, "discriminator")
    _assert_close(ckpt["ema"], ema, "generator EMA")
    G1, D1, _ = progan_reference(data, ckpt, seed=SEED, world_size=2, ranks_in_gradient=1)
    _assert_differs(ckpt["model"], G1, "generator")
    _assert_differs(ckpt["extra"]["discriminator"], D1, "discriminator")


def test_progan_reports_once_under_torchrun(progan_run):
    _, _, proc = progan_run
    _assert_ran(proc)
    assert proc.stdout.count("checkpoint ") == 1
