"""The one prepared GPU check (issue 15): every GPU figure of the generators in one run of under 8 minutes
on one H100 or H200, written to `gpu_check.json` and as a markdown table for benchmarks/README.md.

    benchmarks/gpu_check.sh [--out DIR]       # on the GPU machine (installs .whl/ wheels when present)
    benchmarks/gpu_check.sh --dry-run         # on a CPU, tiny shapes, seconds: what CI runs

Figures: adm-128 training img/s and MFU (bf16; torch.compile off and on), small-128 and ProGAN-128
training img/s, sampling img/s of adm-128 for ddpm-250, ddim-50 and dpmsolver++-20, Inception feature
extraction img/s (random-inception: same cost as the real weights), a 300-step bf16 training run on a
small synthetic set whose loss must fall, the peak GPU memory of each, and last issue 16's metrics
bootstrap (10,000 vs 10,000 images, 200 resamples; FID and sFID resamples on the GPU). Each figure is measured in
its own try block, and the JSON is rewritten after each, so one failure (or the time limit) keeps the
others. Needs torch, diffusers and torch-fidelity; imports no Django. Exit status 1 when a check
failed (an error, or a loss that did not fall).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generation.diffusion.config import preset_config  # noqa: E402
from generation.diffusion.diffusion import GaussianDiffusion  # noqa: E402
from generation.diffusion.pipeline import DiffusionGenerator  # noqa: E402
from generation.diffusion.unet import DiffusionUNet, count_parameters  # noqa: E402
from generation.training.fastpath import FastPath  # noqa: E402

# dense bf16 peak of the chip, for MFU (NVIDIA's data sheets, SXM parts)
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def timed(fn, *, device: torch.device, warmup: int, repeats: int) -> float:
    """Seconds per call of `fn` after `warmup` calls (the GPU synchronised around the timed ones)."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / repeats


def diffusion_train(preset: str, *, device, fast: FastPath, batch: int, overrides: dict, warmup: int,
                    repeats: int) -> dict:
    """img/s, GFLOP per image (forward + backward, counted) and MFU of one optimiser step on `batch` images."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = preset_config(preset, num_classes=2, **overrides)
    reset_peak(device)
    model = DiffusionUNet(cfg).to(device, memory_format=fast.memory_format())
    opt = fast.adamw(model.parameters(), lr=cfg.lr)
    diffusion = GaussianDiffusion(cfg, device)
    forward = fast.compiled(model)
    x = (torch.rand(batch, 3, cfg.image_size, cfg.image_size, device=device) * 2 - 1).contiguous(
        memory_format=fast.memory_format())
    y = torch.randint(0, 2, (batch,), device=device)
    gen = torch.Generator(device=device).manual_seed(0)

    def step(net=forward):
        opt.zero_grad(set_to_none=True)
        with fast.autocast(device):
            loss = diffusion.training_losses(net, x, y, gen).loss.mean()
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:  # eager: the counter does not see inside compiled code
        step(model)
    flops = counter.get_total_flops()
    seconds = timed(step, device=device, warmup=warmup, repeats=repeats)
    peak = peak_tflops(device)
    achieved = flops / seconds / 1e12
    return {"parameters": count_parameters(model), "batch": batch, "image_size": cfg.image_size,
            "images_per_s": round(batch / seconds, 2), "gflop_per_image": round(flops / batch / 1e9, 1),
            "tflops": round(achieved, 1), "mfu": round(achieved / peak, 3) if peak else None,
            "peak_gib": peak_gib(device)}


def progan_train(preset: str, *, device, batch: int, warmup: int, repeats: int) -> dict:
    """img/s of one critic + generator step at the final resolution (stable phase)."""
    from generation.progan.config import preset_config as progan_config
    from generation.progan.networks import Discriminator, Generator
    from generation.progan.train import gan_step
    from generation.training.ema import EMA

    cfg = progan_config(preset, num_classes=2)
    reset_peak(device)
    G, D = Generator(cfg).to(device), Discriminator(cfg).to(device)
    ema = EMA(G, cfg.ema_decay)
    adam = dict(lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps)
    g_opt, d_opt = torch.optim.Adam(G.parameters(), **adam), torch.optim.Adam(D.parameters(), **adam)
    depth = len(cfg.resolutions) - 1
    real = torch.rand(batch, 3, cfg.resolution, cfg.resolution, device=device) * 2 - 1
    labels = torch.randint(0, 2, (batch,), device=device)
    gen = torch.Generator().manual_seed(0)
    seconds = timed(lambda: gan_step(G=G, D=D, ema=ema, g_opt=g_opt, d_opt=d_opt, cfg=cfg, real=real, labels=labels,
                                     depth=depth, alpha=1.0, generator=gen), device=device, warmup=warmup,
                    repeats=repeats)
    return {"resolution": cfg.resolution, "batch": batch, "images_per_s": round(batch / seconds, 2),
            "peak_gib": peak_gib(device)}


def sampling(preset: str, *, device, sampler: str, steps: int, batch: int, overrides: dict) -> dict:
    cfg = preset_config(preset, num_classes=2, **overrides)
    reset_peak(device)
    gen = DiffusionGenerator(DiffusionUNet(cfg), cfg, device)  # bf16 on CUDA: the fast path's default
    labels = torch.arange(batch) % 2
    generators = [torch.Generator().manual_seed(i) for i in range(batch)]
    gen.sample(labels[:1], generators[:1], sampler=sampler, steps=2)  # warm-up
    seconds = timed(lambda: gen.sample(labels, generators, sampler=sampler, steps=steps), device=device, warmup=0,
                    repeats=1)
    return {"sampler": sampler, "steps": steps, "batch": batch, "bf16": gen.bf16,
            "images_per_s": round(batch / seconds, 2), "peak_gib": peak_gib(device)}


def inception(*, device, batch: int, repeats: int) -> dict:
    from evaluation.features import load_extractor

    reset_peak(device)
    extractor = load_extractor("random-inception", device=device, seed=0)
    images = torch.randint(0, 256, (batch, 3, 128, 128), dtype=torch.uint8)
    seconds = timed(lambda: extractor(images), device=device, warmup=1, repeats=repeats)
    return {"batch": batch, "images_per_s": round(batch / seconds, 2), "peak_gib": peak_gib(device)}


def loss_falls(*, device, steps: int, image_size: int, batch: int, overrides: dict, work: Path) -> dict:
    """A real `train()` run (bf16 and the whole fast path on CUDA) on 64 synthetic 2-class patches:
    the mean loss of the last tenth of the steps must be below that of the first tenth."""
    import numpy as np
    from PIL import Image

    from generation.diffusion.train import TrainOptions, train
    from generation.training.logging import metrics_read

    data = work / "patches"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:image_size, 0:image_size] / image_size
    for i in range(64):
        label = ("stripes", "blobs")[i % 2]
        f = 4 + rng.integers(0, 4)
        base = np.sin(2 * np.pi * f * xx) if label == "stripes" else np.sin(2 * np.pi * f * xx) * np.sin(2 * np.pi * f * yy)
        pixels = np.stack([base, base * 0.5, -base], -1) * 0.4 + 0.5 + rng.normal(0, 0.05, (image_size, image_size, 3))
        (data / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray((pixels.clip(0, 1) * 255).astype(np.uint8)).save(data / label / f"{i}.png")
    reset_peak(device)
    started = time.perf_counter()
    config = preset_config("tiny", batch_size=batch, lr=2e-4, ema_decay=0.999, **overrides)
    train(config, TrainOptions(data=data, out=work / "run", steps=steps, seed=0, log_every=1, save_every=steps,
                               device=str(device.type), progress=False, num_workers=2 if device.type == "cuda" else 0,
                               fast=FastPath(compile=False)))  # compile is timed above; here it would only add minutes
    rows = metrics_read(work / "run" / "metrics.csv")
    tenth = max(1, len(rows) // 10)
    first = sum(r["loss"] for r in rows[:tenth]) / tenth
    last = sum(r["loss"] for r in rows[-tenth:]) / tenth
    return {"steps": len(rows), "loss_first_tenth": round(first, 5), "loss_last_tenth": round(last, 5),
            "loss_fell": last < first, "seconds": round(time.perf_counter() - started, 1), "peak_gib": peak_gib(device)}


def metrics_bootstrap(*, device, n: int, resamples: int, dims: tuple[int, int]) -> dict:
    """Issue 16's bootstrap figure: n vs n images, features given (bench_metrics_bootstrap's synthetic
    pool and spatial features of `dims`), `resamples` resamples of FID and sFID on `device` (float64),
    precision/recall, density/coverage, KID and FID-infinity with numpy on the CPU: seconds in all and
    per part. Target: 10,000 vs 10,000, 200 resamples, 2048-d and 2023-d, under 3 minutes."""
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_metrics_bootstrap import features

    from evaluation import bootstrap as B

    rng = np.random.default_rng(0)
    pool_basis, spatial_basis = (rng.normal(size=(64, d)).astype(np.float32) / 8 for d in dims)
    real, fake = features(rng, n, pool_basis, 0.0), features(rng, n, pool_basis, 0.02)
    real_s, fake_s = features(rng, n, spatial_basis, 0.0), features(rng, n, spatial_basis, 0.02)
    reset_peak(device)
    timings: dict = {}
    t0 = time.perf_counter()
    out = B.bootstrap_metrics(real, fake, real_spatial=real_s, fake_spatial=fake_s, device=str(device),
                              spec=B.BootstrapSpec(resamples=resamples, seed=0), timings=timings)
    sync(device)
    return {"seconds": round(time.perf_counter() - t0, 1), "n": n, "resamples": resamples,
            "parts_s": {part: round(wall, 1) for part, (wall, _cpu) in timings.items()},
            "fid_interval": [round(v, 4) for v in out["intervals"]["fid"]], "peak_gib": peak_gib(device)}


def plan(dry_run: bool) -> list[tuple[str, callable]]:
    """(name, thunk(device) -> dict) of every check; the dry run shrinks shapes and counts."""
    # the dry run: the tiny preset shrunk further (about 0.2 M parameters at 32 px)
    tiny = dict(overrides=dict(image_size=32, base_channels=16, layers_per_block=1, attention_head_dim=16)
                if dry_run else {})
    adm, small, progan = ("tiny", "tiny", "tiny") if dry_run else ("adm-128", "small-128", "progan-128")
    b = (lambda n: 2) if dry_run else (lambda n: n)
    w, r = (0, 1) if dry_run else (2, 5)
    eager = FastPath(compile=False)
    checks = [
        ("adm-128 train, bf16, compile off",
         lambda d: diffusion_train(adm, device=d, fast=eager.resolve(d), batch=b(32), warmup=w, repeats=r, **tiny)),
        ("adm-128 train, bf16, compile on",
         lambda d: diffusion_train(adm, device=d, fast=FastPath(compile=not dry_run).resolve(d), batch=b(32),
                                   warmup=w + (0 if dry_run else 1), repeats=r, **tiny)),
        ("small-128 train, bf16",
         lambda d: diffusion_train(small, device=d, fast=FastPath().resolve(d), batch=b(64), warmup=w, repeats=r, **tiny)),
        ("progan-128 train (final resolution)",
         lambda d: progan_train(progan, device=d, batch=b(16), warmup=w, repeats=r)),
    ]
    for sampler, steps in (("ddpm", 250), ("ddim", 50), ("dpmsolver++", 20)):
        checks.append((f"adm-128 sampling {sampler}-{steps}",
                       lambda d, s=sampler, n=steps: sampling(adm, device=d, sampler=s, steps=2 if dry_run else n,
                                                              batch=b(32), **tiny)))
    checks.append(("Inception features", lambda d: inception(device=d, batch=b(256), repeats=r)))
    checks.append(("300-step bf16 training, loss falls",
                   lambda d: loss_falls(device=d, steps=4 if dry_run else 300, image_size=32, batch=4 if dry_run else 32,
                                        overrides=tiny.get("overrides", {}),
                                        work=Path(tempfile.mkdtemp(prefix="gpu_check_")))))
    checks.append(("metrics bootstrap 10k x 10k x 200 (FID, sFID on the GPU)",
                   lambda d: metrics_bootstrap(device=d, n=60 if dry_run else 10000, resamples=3 if dry_run else 200,
                                               dims=(32, 31) if dry_run else (2048, 2023))))
    return checks


def table(results: list[dict]) -> str:
    lines = ["| check | img/s | MFU | peak GPU memory | notes |", "| --- | --- | --- | --- | --- |"]
    for row in results:
        if "error" in row:
            lines.append(f"| {row['name']} | failed | | | {row['error'].splitlines()[0][:120]} |")
            continue
        notes = []
        if "gflop_per_image" in row:
            notes.append(f"{row['gflop_per_image']} GFLOP/img, batch {row['batch']}, {row['tflops']} TFLOP/s")
        if "loss_fell" in row:
            notes.append(f"loss {row['loss_first_tenth']} -> {row['loss_last_tenth']} "
                         f"({'fell' if row['loss_fell'] else 'DID NOT FALL'}), {row['seconds']} s")
        if "parts_s" in row:
            notes.append(f"{row['seconds']} s for {row['n']} vs {row['n']} images, {row['resamples']} resamples ("
                         + ", ".join(f"{part} {s} s" for part, s in row["parts_s"].items()) + ")")
        mfu = f"{100 * row['mfu']:.1f}%" if row.get("mfu") else ""
        mem = f"{row['peak_gib']} GiB" if row.get("peak_gib") is not None else "n/a (CPU)"
        lines.append(f"| {row['name']} | {row.get('images_per_s', '')} | {mfu} | {mem} | {'; '.join(notes)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, a few seconds: checks the script runs")
    p.add_argument("--out", type=Path, default=Path("."), help="folder for gpu_check.json and gpu_check.md")
    p.add_argument("--only", nargs="*", help="run only the checks whose name contains one of these words")
    a = p.parse_args(argv)
    device = torch.device("cpu" if a.dry_run else "cuda")
    if not a.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here; use --dry-run on a CPU", file=sys.stderr)
        return 2
    if a.dry_run:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    FastPath().resolve(device).apply_global()
    a.out.mkdir(parents=True, exist_ok=True)
    header = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "python": platform.python_version(), "dry_run": a.dry_run,
              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    results: list[dict] = []
    failed = False
    for name, check in plan(a.dry_run):
        if a.only and not any(word in name for word in a.only):
            continue
        t0 = time.perf_counter()
        try:
            row = {"name": name, **check(device)}
            failed |= row.get("loss_fell") is False and not a.dry_run  # 4 dry-run steps prove nothing
        except Exception as exc:  # noqa: BLE001 - one failed check must not lose the others
            row = {"name": name, "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}"}
            failed = True
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "error"} | ({"error": row["error"].splitlines()[0]}
                                                                           if "error" in row else {})), flush=True)
        (a.out / "gpu_check.json").write_text(json.dumps({**header, "results": results}, indent=2))
        (a.out / "gpu_check.md").write_text(f"{header['device']}, torch {header['torch']}\n\n{table(results)}\n")
    header["django_imported"] = "django" in sys.modules
    (a.out / "gpu_check.json").write_text(json.dumps({**header, "results": results}, indent=2))
    print(table(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
