"""Benchmark of the automatic metrics (issue 7).

1. Feature extraction with the FID Inception (pool_3, logits and sFID features together): images per
   second on the CPU, and on the GPU when there is one, for 64 x 64 uint8 images (the network resizes
   every image to 299 x 299, so the input size hardly matters).
2. N generated against N real images with every metric (FID, sFID, IS, precision/recall, KID,
   density/coverage, memorisation): the metric time on pool/spatial features of the real shapes
   (streamed moments included), and the total it makes with the measured extraction rate.
   `--end-to-end` runs the whole `evaluate` on N x N synthetic images instead (slow on a CPU).

The extractor is random-inception unless `--weights` names the real file: same network, same speed.

    .venv/bin/python benchmarks/bench_metrics.py [--n 1000] [--extract-n 32] [--batch-size 16] [--weights PATH]
    .venv/bin/python benchmarks/bench_metrics.py --n 10000
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evaluation import metrics as M  # noqa: E402
from evaluation.evaluate import evaluate, format_table  # noqa: E402
from evaluation.features import LOGITS_DIM, POOL_DIM, SPATIAL_DIM, load_extractor  # noqa: E402
from evaluation.reference import RunningMoments  # noqa: E402


def extraction_rate(extractor, n: int, batch_size: int, size: int = 64) -> float:
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, size=(batch_size, 3, size, size), dtype=np.uint8))
    extractor(images[:2])  # warm-up
    if extractor.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    done = 0
    while done < n:
        extractor(images[: min(batch_size, n - done)])
        done += min(batch_size, n - done)
    if extractor.device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def metric_time(n: int, seed: int = 0) -> dict:
    """Seconds per stage for N vs N on features shaped like the Inception's (correlated, non-negative)."""
    rng = np.random.default_rng(seed)
    times = {}

    def features(shift: float, dim: int) -> np.ndarray:
        mix = rng.normal(size=(64, dim)).astype(np.float32) / 8
        return np.abs(rng.normal(size=(n, 64)).astype(np.float32) @ mix + shift).astype(np.float32)

    real_pool, fake_pool = features(0.0, POOL_DIM), features(0.05, POOL_DIM)
    start = time.perf_counter()
    moments = {}
    for name, pool in (("real", real_pool), ("fake", fake_pool)):
        pm, sm = RunningMoments(POOL_DIM), RunningMoments(SPATIAL_DIM)
        spatial = features(0.0, SPATIAL_DIM)
        for i in range(0, n, 64):
            pm.update(pool[i : i + 64])
            sm.update(spatial[i : i + 64])
        moments[name] = (pm.mean, pm.cov, pm.factor, sm.mean, sm.cov, sm.factor)
    times["streamed moments (2 sets)"] = time.perf_counter() - start
    (rmu, rs, rf, rmu_s, rs_s, rf_s), (fmu, fs, ff, fmu_s, fs_s, ff_s) = moments["real"], moments["fake"]
    start = time.perf_counter()
    M.frechet_distance(rmu, rs, fmu, fs, factor1=rf, factor2=ff)
    times["FID"] = time.perf_counter() - start
    start = time.perf_counter()
    M.frechet_distance(rmu_s, rs_s, fmu_s, fs_s, factor1=rf_s, factor2=ff_s)
    times["sFID"] = time.perf_counter() - start
    logits = rng.normal(size=(n, LOGITS_DIM)).astype(np.float32)
    start = time.perf_counter()
    M.inception_score(logits)
    times["IS"] = time.perf_counter() - start
    for name, fn in (("precision/recall", lambda: M.precision_recall(real_pool, fake_pool)),
                     ("density/coverage", lambda: M.density_coverage(real_pool, fake_pool)),
                     ("KID (100 x 1000)", lambda: M.kid(real_pool, fake_pool, 100, 1000)),
                     ("memorisation", lambda: M.memorisation(real_pool, fake_pool))):
        start = time.perf_counter()
        fn()
        times[name] = time.perf_counter() - start
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="images per set for the metric timing")
    parser.add_argument("--extract-n", type=int, default=32, help="images for the extraction rate")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--weights", default=None, help="the real Inception weights (default: random-inception)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--end-to-end", action="store_true", help="run evaluate() on N x N synthetic 64 px images")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    kind = "inception" if args.weights else "random-inception"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, extractor {kind}")
    rates = {}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        extractor = load_extractor(kind, weights_path=args.weights, device=device)
        n = args.extract_n if device == "cpu" else max(args.extract_n, 512)
        batch = args.batch_size if device == "cpu" else 128
        rates[device] = extraction_rate(extractor, n, batch)
        print(f"feature extraction on {device}: {rates[device]:.1f} images/s ({n} images, batch {batch})")
    times = metric_time(args.n)
    print(f"\nmetrics on {args.n} vs {args.n} images (features given):")
    for name, seconds in times.items():
        print(f"  {name:<28} {seconds:8.2f} s")
    metric_total = sum(times.values())
    print(f"  {'all metrics':<28} {metric_total:8.2f} s")
    for device, rate in rates.items():
        total = 2 * args.n / rate + metric_total
        print(f"estimated total, {args.n} vs {args.n} with extraction on {device}: {total:,.0f} s ({total / 60:.1f} min)")
    if args.end_to_end:
        with tempfile.TemporaryDirectory() as tmp:
            rng = np.random.default_rng(1)
            for name in ("real", "fake"):
                np.savez(Path(tmp) / f"{name}.npz", arr_0=rng.integers(0, 256, (args.n, 64, 64, 3), dtype=np.uint8))
            extractor = load_extractor(kind, weights_path=args.weights)
            start = time.perf_counter()
            result = evaluate(Path(tmp) / "real.npz", Path(tmp) / "fake.npz", None, False, extractor,
                              batch_size=args.batch_size if extractor.device.type == "cpu" else 128)
            print(f"\nend to end, {args.n} vs {args.n}: {time.perf_counter() - start:.1f} s")
            print(format_table(result))


if __name__ == "__main__":
    main()
