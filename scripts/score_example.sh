#!/usr/bin/env bash
# Score the shipped example pool offline with ALFA-Mix (no Label Studio) and print the queue head.
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
