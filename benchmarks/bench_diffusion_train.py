"""Diffusion training throughput: images per second, peak memory and model FLOP utilisation (MFU)
per preset, for the full training step (hybrid loss, backward, grad clipping, AdamW, EMA) on random
128x128 (or preset-sized) batches.

    .venv/bin/python benchmarks/bench_diffusion_train.py                       # tiny, CPU, 32 px
    .venv/bin/python benchmarks/bench_diffusion_train.py --preset adm-128 --device cuda --bf16 \
        --batch-size 32 --peak-tflops 989                                       # H100 SXM dense bf16

ADM's reference figure: 24.8 images/s per V100 at 128x128 (Dhariwal & Nichol 2021, table 10).
"""
import argparse
import contextlib
import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generation.diffusion.config import preset_config  # noqa: E402
from generation.diffusion.diffusion import GaussianDiffusion  # noqa: E402
from generation.diffusion.unet import DiffusionUNet, count_parameters  # noqa: E402
from generation.training.distributed import device_resolve  # noqa: E402
from generation.training.ema import EMA  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--image-size", type=int, help="tiny only (default: the preset's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads")
    p.add_argument("--peak-tflops", type=float, help="the device's peak TFLOP/s, for MFU")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = device_resolve(a.device, bf16=a.bf16)
    cfg = preset_config(a.preset, num_classes=2, **({"image_size": a.image_size} if a.image_size else {}))
    model = DiffusionUNet(cfg).to(device)
    ema = EMA(model, cfg.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    diffusion = GaussianDiffusion(cfg, device)
    fwd = torch.compile(model) if a.compile else model
    x = torch.rand(a.batch_size, 3, cfg.image_size, cfg.image_size, device=device) * 2 - 1
    y = torch.randint(0, 2, (a.batch_size,), device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if a.bf16 else contextlib.nullcontext

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = diffusion.training_losses(fwd, x, y, gen).loss.mean()
        loss.backward()
        if cfg.grad_clip:  # 0: ADM's no clipping (the presets' default)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        ema.update(model)

    with FlopCounterMode(display=False) as counter:  # forward + backward FLOPs of one step
        step()
    flops = counter.get_total_flops()
    step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    seconds = (time.perf_counter() - t0) / a.steps
    ips = a.batch_size / seconds
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
        mem = f"peak GPU memory {peak:.2f} GiB"
    else:
        mem = f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
    achieved = flops / seconds / 1e12
    mfu = f", MFU {100 * achieved / a.peak_tflops:.1f}% of {a.peak_tflops:g} TFLOP/s" if a.peak_tflops else ""
    print(f"diffusion train | preset {a.preset} ({count_parameters(model) / 1e6:.1f} M params) | "
          f"{cfg.image_size} px | batch {a.batch_size} | {device} {'bf16' if a.bf16 else 'fp32'} | "
          f"{ips:.2f} images/s ({seconds * 1000:.0f} ms/step) | {mem} | "
          f"{flops / a.batch_size / 1e9:.1f} GFLOP/image, {achieved * 1000:.1f} GFLOP/s achieved{mfu}")


if __name__ == "__main__":
    main()
