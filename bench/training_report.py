"""Training modes compared on the live protocol: a markdown table from ``bench.stream_simulation``'s JSON.

Usage: ``python -m bench.training_report --json bench/out/training_*.json``

One row per (dataset, policy, training, epochs): mean test accuracy over 0-200 labels (the
average of a run's evaluation points, then of the seeds), final accuracy, and the paired gap
to head-only training of the same policy and seeds, and how many batches a run drew (new and
stale ones: ALFA-Mix found candidates in the space it mixes in). Runs of one key in a later
file replace those of an earlier one.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

Run = dict[str, Any]
Key = tuple[str, str, str, int]  # (dataset, policy, training, head_epochs)


def load_runs(paths: list[Path], protocol: str = "live") -> list[Run]:
    runs: dict[tuple[Any, ...], Run] = {}
    for path in paths:
        for run in json.loads(path.read_text())["runs"]:
            if run["protocol"] == protocol:
                run.setdefault("training", "head")
                run.setdefault("head_epochs", 300)  # runs written before the field existed
                runs[(*_key(run), run["seed"])] = run
    return list(runs.values())


def _key(run: Run) -> Key:
    return run["dataset"], run["policy"], run["training"], run["head_epochs"]


def _mean_accuracy(run: Run) -> float:
    return 100 * statistics.fmean(run["accuracy"])


def _drawn(run: Run) -> int:
    events = run.get("batch_events") or {}
    return int(events.get("new", 0) + events.get("stale", 0))


def format_table(runs: list[Run]) -> str:
    groups: dict[Key, dict[int, Run]] = {}
    for run in runs:
        groups.setdefault(_key(run), {})[run["seed"]] = run
    rows = [
        "| dataset | policy | training | epochs | seeds | mean acc (%) | final acc (%) | vs head, paired (points) "
        "| batches drawn per run | seconds per run |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (dataset, policy, training, epochs), by_seed in sorted(groups.items()):
        head = groups.get((dataset, policy, "head", 300), {})
        shared = sorted(set(by_seed) & set(head))
        gaps = [_mean_accuracy(by_seed[s]) - _mean_accuracy(head[s]) for s in shared]
        gap = f"{statistics.fmean(gaps):+.1f}" if gaps and training != "head" else ""
        seeds = list(by_seed.values())
        rows.append(
            f"| {dataset} | {policy} | {training} | {epochs} | {len(seeds)} "
            f"| {statistics.fmean(_mean_accuracy(r) for r in seeds):.1f} "
            f"| {statistics.fmean(100 * r['accuracy'][-1] for r in seeds):.1f} | {gap} "
            f"| {statistics.fmean(_drawn(r) for r in seeds):.1f} "
            f"| {statistics.median(r['seconds'] for r in seeds):.0f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.training_report", description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, nargs="+", required=True, help="stream_simulation outputs")
    parser.add_argument("--protocol", default="live")
    args = parser.parse_args(argv)
    print(format_table(load_runs(args.json, args.protocol)))


if __name__ == "__main__":
    main()
