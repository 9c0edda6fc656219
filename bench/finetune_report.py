"""Fine-tuning against head-only and projection training: a markdown table from ``bench.finetune_simulation``'s JSON.

Usage: ``python -m bench.finetune_report --json bench/out/finetune_simulation.json``

One row per (dataset, image size, policy, fine-tuning variant): mean test accuracy (%) over a
run's evaluation points (0, 20, ..., 200 labels), then over seeds, for each mode; the gap of
fine-tuning to head-only training paired by seed (mean, min..max, in points); final accuracy
of both; median seconds of a fine-tune (``train_tail``) and of re-embedding pool and test.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

Run = dict[str, Any]  # one FinetuneRun as bench.finetune_simulation writes it (dataclasses.asdict)
FINETUNE = "finetune"


def format_table(runs: list[Run]) -> str:
    """Per dataset, policy and fine-tuning variant: mean accuracy (%) over a run's points, then seeds."""

    def mean_acc(run: Run) -> float:
        return 100 * statistics.fmean(run["accuracy"])

    groups: dict[tuple[Any, ...], dict[str, dict[int, Run]]] = {}
    for run in runs:
        variant = f"every {run['every']}, {_config_text(run['config'])}" if run["training"] == FINETUNE else ""
        group = groups.setdefault((run["dataset"], run["size"], run["policy"]), {})
        group.setdefault(f"{run['training']}|{variant}", {})[run["seed"]] = run
    rows = [
        "| dataset | px | policy | fine-tuning | seeds | head | projection | finetune | finetune − head, paired: "
        "mean (min..max) | final acc: head, finetune | fine-tune s (median) | re-embed s (median) |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (dataset, size, policy), group in sorted(groups.items()):
        head, projection = group.get("head|", {}), group.get("projection|", {})
        tuned = {name.split("|")[1]: by_seed for name, by_seed in group.items() if name.startswith(f"{FINETUNE}|")}
        for variant, by_seed in sorted(tuned.items()) or [("", {})]:
            seeds = sorted(set(head) | set(projection) | set(by_seed))
            paired = sorted(set(head) & set(by_seed))
            gaps = [mean_acc(by_seed[s]) - mean_acc(head[s]) for s in paired]
            gap = f"{statistics.fmean(gaps):+.1f} ({min(gaps):+.1f}..{max(gaps):+.1f})" if gaps else ""
            finals = [
                f"{statistics.fmean(100 * r['accuracy'][-1] for r in mode.values()):.1f}" if mode else "-"
                for mode in (head, by_seed)
            ]
            tune_s = [s for run in by_seed.values() for s in run["finetune_seconds"]]
            embed_s = [s for run in by_seed.values() for s in run["embed_seconds"]]
            rows.append(
                f"| {dataset} | {size} | {policy} | {variant} | {len(seeds)} | {_mean(head, mean_acc)} "
                f"| {_mean(projection, mean_acc)} | {_mean(by_seed, mean_acc)} | {gap} | {', '.join(finals)} "
                f"| {_median(tune_s)} | {_median(embed_s)} |"
            )
    return "\n".join(rows)


def _mean(by_seed: dict[int, Run], figure: Any) -> str:
    return f"{statistics.fmean(figure(run) for run in by_seed.values()):.1f}" if by_seed else "-"


def _median(seconds: list[float]) -> str:
    return f"{statistics.median(seconds):.1f}" if seconds else "-"


def _config_text(config: dict[str, Any]) -> str:
    blocks, epochs, batch, lr = (config[k] for k in ("n_blocks", "epochs", "batch_size", "learning_rate"))
    return f"{blocks} block(s), {epochs} epochs, batch {batch}, lr {lr:g}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.finetune_report", description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, nargs="+", required=True, help="finetune_simulation outputs")
    args = parser.parse_args(argv)
    print(format_table([run for path in args.json for run in json.loads(path.read_text())["runs"]]))


if __name__ == "__main__":
    main()
