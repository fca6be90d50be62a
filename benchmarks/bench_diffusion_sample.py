"""Diffusion sampling throughput: images per second per sampler and step count, with the class-
conditional model (EMA weights; weights random here, which does not change the cost).

    .venv/bin/python benchmarks/bench_diffusion_sample.py                      # tiny, CPU, 32 px
    .venv/bin/python benchmarks/bench_diffusion_sample.py --preset adm-128 --device cuda --bf16 \
        --batch-size 64 --steps 25 50 250
"""
import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generation.diffusion.config import preset_config  # noqa: E402
from generation.diffusion.pipeline import DiffusionGenerator  # noqa: E402
from generation.diffusion.samplers import SAMPLER_NAMES  # noqa: E402
from generation.diffusion.unet import DiffusionUNet  # noqa: E402
from generation.training.distributed import device_resolve  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--samplers", nargs="+", default=list(SAMPLER_NAMES), choices=SAMPLER_NAMES)
    p.add_argument("--steps", nargs="+", type=int, default=[10])
    p.add_argument("--guidance", type=float, default=1.0, help="!= 1 doubles the model batch (CFG)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = device_resolve(a.device, bf16=a.bf16)
    cfg = preset_config(a.preset, num_classes=2, cfg_drop=0.1)
    gen = DiffusionGenerator(DiffusionUNet(cfg), cfg, device)
    labels = torch.arange(a.batch_size) % 2
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if a.bf16 else contextlib.nullcontext
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with autocast():
        gen.sample(labels, [torch.Generator().manual_seed(i) for i in range(a.batch_size)], sampler="ddim", steps=1)
    for sampler in a.samplers:
        for steps in a.steps:
            gens = [torch.Generator().manual_seed(i) for i in range(a.batch_size)]
            sync()
            t0 = time.perf_counter()
            with autocast():
                gen.sample(labels, gens, sampler=sampler, steps=steps, guidance=a.guidance)
            sync()
            seconds = time.perf_counter() - t0
            print(f"diffusion sample | preset {a.preset} | {cfg.image_size} px | {sampler:11s} | {steps:4d} steps | "
                  f"batch {a.batch_size} | {device} {'bf16' if a.bf16 else 'fp32'} | guidance {a.guidance:g} | "
                  f"{a.batch_size / seconds:.3f} images/s")


if __name__ == "__main__":
    main()
