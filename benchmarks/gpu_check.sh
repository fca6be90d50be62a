#!/usr/bin/env bash
# The one prepared GPU check of the generators (see benchmarks/gpu_check.py and benchmarks/README.md).
#   benchmarks/gpu_check.sh [--out DIR]    on the GPU machine: under 8 minutes on one H100 / H200
#   benchmarks/gpu_check.sh --dry-run      on a CPU: tiny shapes, seconds (run by the test suite)
# Runs from a fresh copy of the tree with the machine's own python3 and torch. Packages that machine
# lacks (diffusers, torch-fidelity, importlib_metadata) travel as wheels in .whl/ (README: how to get
# them) and are installed into /tmp/site here, never into the machine's own environment.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# 470 s: the 8-minute budget, with room to write the results of a check cut short
exec timeout --signal=INT 470 "$PY" benchmarks/gpu_check.py "$@"
