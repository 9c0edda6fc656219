"""Speed and peak memory of one ALFA-Mix query: ours (the CLI) against the reference re-statement.

Usage: ``OMP_WAIT_POLICY=PASSIVE python -m bench.bench_query [--sizes 20000 100000 1000000] [--repeats 5]``

Each measurement runs ``python -m model.alfamix score --timing`` in a fresh
process, so its peak RSS (ru_maxrss of the child) is the whole CLI's: Python,
torch, the loaded .npz and the query. The reference runs in a fresh process
too, on the same file, in the same invocation, so ratios compare like with like
on a shared, noisy machine. Reported figures are medians over ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
from pathlib import Path

from bench.synthetic import make_query_inputs, save_npz

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / "out" / "inputs"
log = logging.getLogger(__name__)

REFERENCE_SNIPPET = """
import json, sys, numpy as np, torch
from bench.reference_alfamix import query_reference_alfamix
with np.load(sys.argv[1]) as a:
    z_lab, y_lab, z_unl = (torch.from_numpy(a[k]) for k in ("lb_emb", "lb_y", "ulb_emb"))
    w, b = torch.from_numpy(a["head_w"]), torch.from_numpy(a["head_b"])
r = query_reference_alfamix(z_lab, y_lab.long(), z_unl, w, b, n_query=int(sys.argv[2]), random_state=0)
print(json.dumps({"candidate_search_seconds": r.candidate_search_seconds,
                  "selection_seconds": r.selection_seconds, "query_seconds": r.query_seconds,
                  "candidates": int(r.candidates.sum())}))
"""


def input_file(n_unl: int, dim: int, n_classes: int) -> Path:
    """The synthetic pool of this size, generated once and cached under bench/out/."""
    path = CACHE / f"pool_n{n_unl}_d{dim}_k{n_classes}.npz"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        log.info("generating %s", path.name)
        save_npz(path, make_query_inputs(n_unl, dim=dim, n_classes=n_classes, random_state=0))
    return path


# Runs a module or a snippet as __main__, then reports the process's own peak RSS (KiB) on stderr.
PEAK_RSS_WRAPPER = """
import resource, runpy, sys
kind, target, *sys.argv[1:] = sys.argv[1:]
try:
    if kind == "module":
        sys.argv[0] = target
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        exec(compile(target, "<snippet>", "exec"), {"__name__": "__main__"})
except SystemExit as stop:
    if stop.code:
        raise
finally:
    print("PEAK_RSS_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def run_child(kind: str, target: str, args: list[str]) -> tuple[dict[str, float], float]:
    """Run a module or snippet in a fresh process; return the last JSON line it printed and its peak RSS (GiB)."""
    command = [sys.executable, "-c", PEAK_RSS_WRAPPER, kind, target, *args]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    lines = (completed.stdout + completed.stderr).strip().splitlines()
    peak_kib = next(int(line.split()[1]) for line in lines if line.startswith("PEAK_RSS_KIB"))
    timing = next(json.loads(line) for line in reversed(lines) if line.startswith("{"))
    return timing, peak_kib / 2**20


def measure_ours(path: Path, n_query: int, repeats: int) -> dict[str, float]:
    args = ["score", "--input", str(path), "--output", str(CACHE / "out.npz")]
    args += ["--n-query", str(n_query), "--timing", "--device", "cpu"]
    runs = [run_child("module", "model.alfamix", args) for _ in range(repeats)]
    return summarize([timing for timing, _ in runs], [rss for _, rss in runs])


def measure_reference(path: Path, n_query: int, repeats: int) -> dict[str, float]:
    runs = [run_child("snippet", REFERENCE_SNIPPET, [str(path), str(n_query)]) for _ in range(repeats)]
    return summarize([timing for timing, _ in runs], [rss for _, rss in runs])


def summarize(timings: list[dict[str, float]], peaks: list[float]) -> dict[str, float]:
    summary = {key: statistics.median(t[key] for t in timings) for key in timings[0]}
    summary["peak_rss_gib"] = max(peaks)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000, 1_000_000])
    parser.add_argument("--n-queries", type=int, nargs="+", default=[100, 300, 1000], help="at the first size")
    parser.add_argument("--reference-max-size", type=int, default=20_000, help="run the reference up to this N")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rows = []
    for n_unl in args.sizes:
        path = input_file(n_unl, args.dim, args.classes)
        for n_query in args.n_queries if n_unl == args.sizes[0] else [100]:
            ours = measure_ours(path, n_query, args.repeats)
            row = {"n": n_unl, "n_query": n_query, "ours": ours}
            if n_unl <= args.reference_max_size:
                row["reference"] = measure_reference(path, n_query, args.repeats)
                row["speedup"] = row["reference"]["query_seconds"] / ours["query_seconds"]
            log.info("%s", json.dumps(row))
            rows.append(row)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
