"""The prepared GPU check cannot rot before a GPU session uses it: `benchmarks/gpu_check.sh --dry-run`
runs every check on the CPU with tiny shapes and writes gpu_check.json and its markdown table."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_dry_run_runs_every_check(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["dry_run"] is True
    names = [r["name"] for r in report["results"]]
    assert names == ["adm-128 train, bf16, compile off", "adm-128 train, bf16, compile on", "small-128 train, bf16",
                     "progan-128 train (final resolution)", "adm-128 sampling ddpm-250", "adm-128 sampling ddim-50",
                     "adm-128 sampling dpmsolver++-20", "Inception features", "300-step bf16 training, loss falls",
                     "metrics bootstrap 10k x 10k x 200 (FID, sFID on the GPU)"]
    assert not [r for r in report["results"] if "error" in r]
    assert all(r["images_per_s"] > 0 for r in report["results"] if "images_per_s" in r)
    assert report["results"][0]["gflop_per_image"] > 0
    bootstrap = report["results"][-1]
    assert bootstrap["resamples"] == 3 and set(bootstrap["parts_s"]) >= {"fid resamples", "sfid resamples", "FID-infinity"}
    low, high = bootstrap["fid_interval"]
    assert 0 < low <= high
    table = (tmp_path / "gpu_check.md").read_text()
    assert table.count("\n| ") == 2 + len(names)  # header, separator and one row per check
    assert report["django_imported"] is False  # it must run where Django is not installed


def test_gpu_check_refuses_a_machine_without_gpu_unless_dry_run(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and "--dry-run" in proc.stderr
