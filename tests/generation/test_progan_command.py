"""`manage.py train_progan` and the admin job's call: thin wrappers over `train_progan`."""
import pytest
import torch
from django.core.management import CommandError, call_command

from generation.training.checkpoint import checkpoint_load
from tests.generation.test_progan_train import _write_patches

torch.set_num_threads(1)


def test_command_trains_and_resumes(tmp_path):
    data, out = _write_patches(tmp_path / "patches"), tmp_path / "run"
    args = ["--data", str(data), "--out", str(out), "--preset", "tiny", "--images-per-phase-fade", "8",
            "--images-per-phase-stable", "4", "--batch-sizes", "4", "--device", "cpu", "--sample-every", "0"]
    call_command("train_progan", *args, "--max-steps", "2")
    assert checkpoint_load(out, kind="progan")["step"] == 2
    call_command("train_progan", *args, "--resume")
    ckpt = checkpoint_load(out, kind="progan")
    # 4 stable + (8 fade + 4 stable) * 2 = 28 images in batches of 4.
    assert (ckpt["step"], ckpt["extra"]["resolution"], ckpt["config"]["batch_sizes"]["16"]) == (7, 16, 4)


def test_command_reports_bad_input_clearly(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        call_command("train_progan", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"),
                     "--preset", "tiny", "--device", "cpu")
    with pytest.raises(CommandError, match="expected RES:SIZE"):
        call_command("train_progan", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--batch-sizes", "4-8")
    with pytest.raises(CommandError, match="checkpoint not found"):
        call_command("train_progan", "--data", str(_write_patches(tmp_path / "p")), "--out", str(tmp_path / "run"),
                     "--preset", "tiny", "--device", "cpu", "--resume")


class _Reporter:
    """Stands in for the job's reporter: callable with (fraction, message), plus `progress`."""

    def __init__(self):
        self.calls = []

    def __call__(self, fraction=None, message="", *, force=False):
        self.calls.append((fraction, message))

    progress = __call__

    def log(self, line, *, force=False):
        self.calls.append((None, line))

    def on_progress(self, what="step", **_):
        return lambda step, total, metrics: self(step / total, f"{what} {step}/{total}")

    def check_cancelled(self):
        pass


def test_admin_job_parameters_reach_the_trainer(tmp_path):
    from jobs.runners import run_train_progan, runner_validate

    data = _write_patches(tmp_path / "patches")
    params = runner_validate(kind="train_progan", params=dict(
        data=str(data), out=str(tmp_path / "run"), preset="tiny", image_size="8", images_per_phase="8",
        batch_size="4", seed="3"))
    reporter = _Reporter()
    result = run_train_progan(params, reporter)
    ckpt = checkpoint_load(tmp_path / "run", kind="progan")
    assert (ckpt["step"], ckpt["extra"]["resolution"]) == (6, 8)  # 4 px stable, 8 px fade + stable: 24 images
    assert result["checkpoint"] == str(tmp_path / "run" / "checkpoint.pt")
    assert [c for c in reporter.calls if c[0] is not None][-1][0] == pytest.approx(1.0)
