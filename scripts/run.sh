#!/usr/bin/env bash
# The main job, for now: score the shipped example pool with ALFA-Mix and print the head of the queue.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh requirements.txt
mkdir -p out
python -m model.alfamix score --input examples/pool.npz --output out/queue.npz --n-query 20 --timing
python - <<'PY'
import numpy as np

with np.load("out/queue.npz") as out:
    order = out["order"]
    print(f"{len(order)} unlabeled items, {int(out['candidates'].sum())} ALFA-Mix candidates")
    print("label these first:", order[:20].tolist())
    print("their scores:", np.round(out["score"][order[:5]], 4).tolist(), "...")
PY
