"""Figure: ProGAN training throughput (images per second) at each resolution, stable and fading in.

One step = one WGAN-GP critic update + one generator update + the EMA (`generation.progan.train.gan_step`),
on random images at the phase's resolution and batch size. Defaults: the `tiny` preset on the CPU
(4, 8, 16 px). On a GPU: `--device cuda --preset progan-128` (4 .. 128 px, the paper's batch sizes).

    .venv/bin/python benchmarks/bench_progan_train.py
    .venv/bin/python benchmarks/bench_progan_train.py --device cuda --preset progan-128 --steps 20
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generation.progan.config import parse_batch_sizes, preset_config  # noqa: E402
from generation.progan.networks import Discriminator, Generator  # noqa: E402
from generation.progan.train import gan_step  # noqa: E402
from generation.training.ema import EMA  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(preset: str, device: str, steps: int, warmup: int, batch_sizes: str | None, threads: int | None) -> list[dict]:
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    cfg = preset_config(preset, num_classes=2, batch_sizes=parse_batch_sizes(batch_sizes) if batch_sizes else None)
    torch.manual_seed(0)
    G, D = Generator(cfg).to(dev), Discriminator(cfg).to(dev)
    ema = EMA(G, cfg.ema_decay)
    adam = dict(lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps)
    g_opt, d_opt = torch.optim.Adam(G.parameters(), **adam), torch.optim.Adam(D.parameters(), **adam)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for depth, res in enumerate(cfg.resolutions):
        bs = cfg.batch_size(res)
        real = torch.rand(bs, 3, res, res, generator=gen).mul(2).sub(1).to(dev)
        labels = torch.randint(0, cfg.num_classes, (bs,), generator=gen).to(dev)
        for alpha in ([1.0] if depth == 0 else [0.5, 1.0]):
            def one():
                return gan_step(G=G, D=D, ema=ema, g_opt=g_opt, d_opt=d_opt, cfg=cfg, real=real, labels=labels,
                                depth=depth, alpha=alpha, generator=gen)
            for _ in range(warmup):
                one()
            _sync(dev)
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            t0 = time.perf_counter()
            for _ in range(steps):
                one()
            _sync(dev)
            dt = time.perf_counter() - t0
            row = {"resolution": res, "phase": "fade-in" if alpha < 1 else "stable", "batch": bs,
                   "steps_per_s": steps / dt, "images_per_s": steps * bs / dt}
            if dev.type == "cuda":
                row["peak_mem_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
            rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-sizes", help="e.g. 4:128,8:128 (default: the preset's)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    a = p.parse_args()
    rows = bench(a.preset, a.device, a.steps, a.warmup, a.batch_sizes, a.threads)
    name = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"ProGAN training throughput, preset {a.preset}, {name} (critic + generator update + EMA per step)")
    print(f"{'res':>5} {'phase':>8} {'batch':>6} {'steps/s':>9} {'images/s':>10}" + ("  peak GiB" if "peak_mem_gib" in rows[0] else ""))
    for r in rows:
        mem = f"  {r['peak_mem_gib']:8.2f}" if "peak_mem_gib" in r else ""
        print(f"{r['resolution']:>5} {r['phase']:>8} {r['batch']:>6} {r['steps_per_s']:>9.2f} {r['images_per_s']:>10.1f}{mem}")


if __name__ == "__main__":
    main()
