"""Quality against sampling steps: FID (random-inception features, UNCALIBRATED) of the `tiny` diffusion
model trained on the demo patches, for ddpm (250, 100, 50), ddim (50, 25, 10) and dpmsolver++ (25, 20,
15, 10), with a bootstrap interval over the generated images (`evaluation.bootstrap`, the real set
fixed). A benchmark, not a test: it trains `--train-steps` steps (seeded: the same model however loaded
the machine is), or for `--minutes` (at most 20) on this machine, then samples and scores every setting.

    nice -n 10 .venv/bin/python benchmarks/bench_diffusion_quality.py --train-steps 700 --out var/bench_quality

Writes `<out>/quality.json` (updated after each setting, so a cut-short run keeps what it measured and
a rerun with the same --out continues it), `benchmarks/quality_vs_steps.png` and prints the markdown
table for benchmarks/README.md. The FID uses Inception with fixed random weights: numbers are
comparable between the rows of one run only, never with published FIDs. Target: some setting with
<= 20 network evaluations within 5% of ddpm-250's FID.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation.bootstrap import WeightedMoments, percentile_interval, resample_counts, weighted_frechet_distance  # noqa: E402
from evaluation.features import load_extractor  # noqa: E402
from evaluation.metrics import frechet_distance  # noqa: E402
from generation.diffusion.config import preset_config  # noqa: E402
from generation.diffusion.pipeline import DiffusionGenerator  # noqa: E402
from generation.diffusion.train import TrainOptions, train  # noqa: E402
from generation.training.data import PatchDataset, step_generator, to_uint8  # noqa: E402
from generation.training.distributed import seed_everything  # noqa: E402
from jobs.demo_data import demo_patches_write  # noqa: E402

# Cheapest first, so a run cut short keeps the most rows (ddpm-250 alone costs more than all the rest).
SETTINGS = [("ddim", 10), ("dpmsolver++", 10), ("dpmsolver++", 15), ("dpmsolver++", 20), ("dpmsolver++", 25),
            ("ddim", 25), ("ddim", 50), ("ddpm", 50), ("ddpm", 100), ("ddpm", 250)]


def features_of(extractor, images: torch.Tensor, batch: int = 32) -> np.ndarray:
    return np.concatenate([extractor(images[i:i + batch]).pool for i in range(0, len(images), batch)])


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    return frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))


def fid_bootstrap(real: np.ndarray, fake: np.ndarray, *, n: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of the FID over resamples (with replacement) of the generated images, the
    real set fixed: `evaluation.bootstrap`'s count-weighted moments, as the app's evaluations use."""
    real_moments, fake_moments = WeightedMoments(real), WeightedMoments(fake)
    real_counts = np.ones(len(real), dtype=np.int64)
    fake_counts = resample_counts(len(fake), n, np.random.default_rng(seed))
    return percentile_interval([weighted_frechet_distance(real_moments, fake_moments, real_counts, counts)
                                for counts in fake_counts], 0.95)


# The EMA (no warm-up) keeps decay^steps of the untrained network, whose output layers are zero: at
# 0.999, 50% of it after 700 steps, so the sampled model predicts too little noise, its x0 (the error
# amplified by sigma/alpha) falls outside [-1, 1], and the samplers that clip x0 and re-derive the
# noise from it saturate (DPM-Solver++ FID 157 at every step count; issue 15, see
# tests/generation/test_sampler_trained_like.py). 0.99 leaves 0.1% after 700 steps.
EMA_DECAY = 0.99


def train_config(batch: int):
    return preset_config("tiny", batch_size=batch, lr=2e-4, ema_decay=EMA_DECAY)


def train_steps(steps: int, data: Path, run: Path, seed: int, batch: int) -> dict:
    """Train `tiny` for exactly `steps` steps (data order, timesteps and noise are functions of the
    seed and the step): the same model on any machine, however loaded; resumes a cut-short run."""
    started = time.perf_counter()
    resume = (run / "checkpoint.pt").exists()
    train(train_config(batch), TrainOptions(data=data, out=run, steps=steps, seed=seed, log_every=50,
                                            save_every=50, resume=resume, device="cpu", progress=False))
    return {"steps": steps, "batch": batch, "seed": seed,
            "train_minutes": round((time.perf_counter() - started) / 60, 1)}


def train_for(minutes: float, data: Path, run: Path, seed: int, batch: int) -> dict:
    """Train `tiny` in chunks of 50 steps (exact resumes) until `minutes` have passed."""
    started, steps = time.perf_counter(), 0
    while time.perf_counter() - started < 60 * minutes:
        steps += 50
        train(train_config(batch), TrainOptions(data=data, out=run, steps=steps, seed=seed, log_every=50,
                                                save_every=50, resume=steps > 50, device="cpu", progress=False))
    return {"steps": steps, "batch": batch, "seed": seed,
            "train_minutes": round((time.perf_counter() - started) / 60, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=15.0, help="training time (at most 20); see --train-steps")
    p.add_argument("--train-steps", type=int, default=0,
                   help="train exactly this many steps instead of --minutes: comparable runs on a loaded machine")
    p.add_argument("--out", type=Path, default=Path("var/bench_quality"))
    p.add_argument("--n", type=int, default=128, help="generated images per setting")
    p.add_argument("--n-real", type=int, default=1000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.train_steps < 0:
        p.error(f"--train-steps {a.train_steps}: expected a positive number of steps (0: use --minutes)")
    torch.set_num_threads(a.threads)
    seed_everything(a.seed)  # the sampling noise has its own generators; this fixes anything else drawn
    a.out.mkdir(parents=True, exist_ok=True)
    data = a.out / "demo_patches"
    if not (data / "manifest.csv").exists():
        demo_patches_write(folder=data, patch_size=32, stride=8)
    run = a.out / "run"
    result_path = a.out / "quality.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else {"rows": []}
    if not (run / "checkpoint.pt").exists() or "training" not in result:
        result["training"] = (train_steps(a.train_steps, data, run, a.seed, a.batch) if a.train_steps
                              else train_for(min(a.minutes, 20.0), data, run, a.seed, a.batch))
        result_path.write_text(json.dumps(result, indent=2))
    extractor = load_extractor("random-inception", device="cpu", seed=0)
    dataset = PatchDataset(data)
    pick = np.random.default_rng(a.seed).permutation(len(dataset))[:a.n_real]
    real = features_of(extractor, torch.stack([dataset[int(i)][0] for i in pick]))
    gen = DiffusionGenerator.from_checkpoint(run / "checkpoint.pt", device="cpu")
    result["training"]["ema_decay"] = gen.config.ema_decay  # the checkpoint's: a resumed run keeps its own
    if a.train_steps and gen.step != a.train_steps:
        sys.exit(f"{run / 'checkpoint.pt'}: trained {gen.step} steps, not --train-steps {a.train_steps}; "
                 "choose another --out")
    labels = torch.arange(a.n) % len(gen.classes)
    done = {(r["sampler"], r["steps"]) for r in result["rows"]}
    for sampler, steps in SETTINGS:
        if (sampler, steps) in done:
            continue
        t0 = time.perf_counter()
        images = torch.cat([gen.sample(labels[i:i + 32], [step_generator(a.seed, j, stream=11)
                                                          for j in range(i, min(i + 32, a.n))],
                                       sampler=sampler, steps=steps) for i in range(0, a.n, 32)])
        seconds = time.perf_counter() - t0
        fake = features_of(extractor, to_uint8(images))
        low, high = fid_bootstrap(real, fake, n=a.bootstrap, seed=a.seed)
        result["rows"].append({"sampler": sampler, "steps": steps, "nfe": steps, "fid": fid(real, fake),
                               "fid_low": low, "fid_high": high, "sample_seconds": round(seconds, 1)})
        result_path.write_text(json.dumps(result, indent=2))
        print(result["rows"][-1], flush=True)
    plot(result, Path(__file__).resolve().parent / "quality_vs_steps.png")
    print(table(result))


def table(result: dict) -> str:
    base = next((r["fid"] for r in result["rows"] if (r["sampler"], r["steps"]) == ("ddpm", 250)), None)
    lines = ["| sampler | NFE | FID (random-inception, uncalibrated) | 95% bootstrap | vs ddpm-250 |",
             "| --- | --- | --- | --- | --- |"]
    order = ("ddpm", "ddim", "dpmsolver++")  # shown by sampler, most steps first, whatever order they ran in
    for r in sorted(result["rows"], key=lambda r: (order.index(r["sampler"]), -r["nfe"])):
        rel = f"{100 * (r['fid'] / base - 1):+.1f}%" if base else ""
        lines.append(f"| {r['sampler']} | {r['nfe']} | {r['fid']:.2f} | {r['fid_low']:.2f} to {r['fid_high']:.2f} | {rel} |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for sampler in ("ddpm", "ddim", "dpmsolver++"):
        rows = sorted((r for r in result["rows"] if r["sampler"] == sampler), key=lambda r: r["nfe"])
        if not rows:
            continue
        x = [r["nfe"] for r in rows]
        y = [r["fid"] for r in rows]
        err = [[r["fid"] - r["fid_low"] for r in rows], [r["fid_high"] - r["fid"] for r in rows]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=sampler)
    ax.set_xscale("log")
    ax.set_xlabel("network evaluations (NFE)")
    ax.set_ylabel("FID, random-inception (uncalibrated)")
    t = result.get("training", {})
    ax.set_title(f"tiny on demo patches, {t.get('steps')} steps x {t.get('batch')} (shared 2-core CPU)", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
