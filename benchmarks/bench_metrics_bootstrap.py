"""Benchmark of the bootstrap intervals (issue 16): N real against N generated images, features given
(pool 2048-d and sFID spatial 2023-d, correlated like real features), `--resamples` resamples of
every metric (FID, sFID, precision/recall, density/coverage, KID) plus FID-infinity. Prints each
part's time (wall and process CPU seconds), the total and the load average. Target: 10,000 vs 10,000
with 200 resamples in under 3 minutes (on the 2-core dev machine the exact FID and sFID resamples
alone cannot meet it: see the lower bound in evaluation/bootstrap.py's docstring).

    .venv/bin/python benchmarks/bench_metrics_bootstrap.py [--n 10000] [--resamples 200] [--metrics fid,sfid,pr,dc,kid]
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evaluation import bootstrap as B  # noqa: E402


def features(rng, n: int, basis: np.ndarray, shift: float) -> np.ndarray:
    # Non-negative, correlated, a decaying spectrum: like ReLU-pooled Inception features. Both sets
    # share `basis`, the generated one shifted: overlapping sets, as a fair generator gives.
    d = basis.shape[1]
    x = rng.normal(size=(n, len(basis))).astype(np.float32) @ basis + rng.normal(size=(n, d)).astype(np.float32) * 0.05
    return np.maximum(x + 0.3 + shift, 0).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--metrics", default="fid,sfid,pr,dc,kid")
    args = parser.parse_args()
    metrics = tuple(args.metrics.split(","))
    rng = np.random.default_rng(0)
    pool_basis = rng.normal(size=(64, 2048)).astype(np.float32) / 8
    spatial_basis = rng.normal(size=(64, 2023)).astype(np.float32) / 8
    real, fake = features(rng, args.n, pool_basis, 0.0), features(rng, args.n, pool_basis, 0.02)
    real_s, fake_s = features(rng, args.n, spatial_basis, 0.0), features(rng, args.n, spatial_basis, 0.02)

    def tick(done, total):
        if done % 10 == 0 or done == total:
            print(f"  Frechet resamples {done}/{total}: {time.perf_counter() - start:.1f} s", flush=True)

    timings: dict[str, float] = {}
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), time.process_time()
    out = B.bootstrap_metrics(real, fake, real_spatial=real_s, fake_spatial=fake_s, metrics=metrics,
                              spec=B.BootstrapSpec(resamples=args.resamples, seed=0), on_resample=tick,
                              timings=timings)
    total, total_cpu = time.perf_counter() - start, time.process_time() - cpu
    for key, (low, high) in out["intervals"].items():
        print(f"{key:10s} [{low:.5g}, {high:.5g}]")
    if out["fid_inf"] is not None:
        print(f"FID-infinity {out['fid_inf']:.5g}")
    print(f"{args.n} vs {args.n}, {args.resamples} resamples, {','.join(metrics)}:")
    for part, (seconds, cpu_seconds) in timings.items():
        print(f"  {part:65s} {seconds:7.1f} s (CPU {cpu_seconds:.1f} s)")
    print(f"  {'total':65s} {total:7.1f} s (process CPU {total_cpu:.1f} s; load average {load:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end)")


if __name__ == "__main__":
    main()
