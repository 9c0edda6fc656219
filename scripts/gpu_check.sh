#!/usr/bin/env bash
# On a CUDA machine: embedding throughput (batch 64/256, fp16 vs fp32) and ALFA-Mix scoring on the GPU.
# Prints JSON and a Markdown table for docs/benchmarks.md. Extra arguments go to bench/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh requirements-dev.txt
python -m bench.gpu_check "$@"
