"""The GPU fast path: every switch on by default on CUDA, off on a CPU (CPU numbers unchanged), each
one can be turned off from the command line, and what cannot run says why instead of failing."""
import pytest
import torch
from django.core.management import CommandError, call_command

from generation.training.checkpoint import checkpoint_load
from generation.training.distributed import DeviceError
from generation.training.fastpath import FastPath, compile_unavailable
from tests.generation.diffusion_helpers import write_patches


def test_everything_is_off_on_a_cpu_and_on_on_cuda():
    cpu = FastPath().resolve(torch.device("cpu"))
    assert (cpu.bf16, cpu.channels_last, cpu.compile, cpu.tf32, cpu.fused_adamw, cpu.device_augment) == (False,) * 6
    assert cpu.num_workers == 0 and cpu.memory_format() == torch.contiguous_format
    cuda = FastPath(compile=False).resolve(torch.device("cuda"))  # resolve() only reads the device type
    assert (cuda.bf16, cuda.channels_last, cuda.tf32, cuda.fused_adamw, cuda.device_augment) == (True,) * 5
    assert cuda.compile is False and cuda.num_workers >= 1 and cuda.memory_format() == torch.channels_last


def test_bf16_forced_on_a_cpu_is_a_clear_error():
    with pytest.raises(DeviceError, match="needs a CUDA GPU"):
        FastPath(bf16=True).resolve(torch.device("cpu"))


def test_compile_falls_back_with_a_message_when_it_cannot_run(monkeypatch):
    model = torch.nn.Linear(2, 2)
    monkeypatch.delattr(torch, "compile")
    assert "no torch.compile" in compile_unavailable(model)
    messages = []
    assert FastPath(compile=True).compiled(model, log=messages.append) is model
    assert "torch.compile off" in messages[0] and "--no-compile" in messages[0]


def test_adamw_is_the_plain_one_when_fused_is_off():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert not FastPath(fused_adamw=False).adamw(params, lr=1e-3).defaults.get("fused")


@pytest.mark.django_db
def test_the_command_takes_each_switch_off_and_micro_batch_auto(tmp_path):
    write_patches(tmp_path / "data", n=4)
    torch.set_num_threads(1)
    call_command("train_diffusion", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--preset", "tiny",
                 "--device", "cpu", "--steps", "1", "--batch-size", "2", "--micro-batch", "auto", "--no-bf16",
                 "--no-channels-last", "--no-compile", "--no-tf32", "--no-fused-adamw", "--no-device-augment",
                 "--num-workers", "0", "--no-progress")
    assert checkpoint_load(tmp_path / "run", kind="diffusion")["config"]["micro_batch"] == 2
    with pytest.raises(CommandError, match="needs a CUDA GPU"):
        call_command("train_diffusion", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "gpu"),
                     "--preset", "tiny", "--device", "cpu", "--steps", "1", "--bf16", "--no-progress")
    with pytest.raises(CommandError, match="expected a number or auto"):
        call_command("train_diffusion", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "x"),
                     "--preset", "tiny", "--micro-batch", "lots")
