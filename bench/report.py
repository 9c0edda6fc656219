"""Report of the active-learning simulation: summary table, per-label curves, targets, plot.

Used by ``bench/simulate.py``; reads the per-run results it produced.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from bench.simulate import RunResult, SimulationConfig


@dataclass(frozen=True)
class Summary:
    """One (dataset, strategy) row: accuracies in percent over the whole curve, averaged over seeds."""

    dataset: str
    strategy: str
    mean_accuracy: float  # mean over the n_rounds + 1 points, then over seeds
    std_accuracy: float  # std over seeds of the per-seed mean (ddof=1)
    delta_random: float  # mean_accuracy minus random's, in points
    final_accuracy: float  # at the last point, mean over seeds
    query_seconds: float  # mean wall time of one query
    batch_classes: float  # mean distinct true classes in a queried batch
    diagnostics: dict[str, float]  # ALFA-Mix only: means over rounds and seeds


def summarise(runs: list[RunResult]) -> list[Summary]:
    """Rows in the order the runs came, one per (dataset, strategy)."""
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for run in runs:
        groups.setdefault((run.dataset, run.strategy), []).append(run)
    per_seed_mean = {key: np.array([100 * np.mean(run.accuracy) for run in group]) for key, group in groups.items()}
    rows = []
    for (dataset, strategy), group in groups.items():
        means = per_seed_mean[(dataset, strategy)]  # (S,)
        random = per_seed_mean.get((dataset, "random"))
        diagnostics: dict[str, float] = {}
        if group[0].diagnostics and group[0].diagnostics[0]:
            for key in group[0].diagnostics[0]:
                diagnostics[key] = float(np.mean([d[key] for run in group for d in run.diagnostics]))
            filled = [d["filled"] > 0 for run in group for d in run.diagnostics]
            diagnostics["rounds_filled"] = float(np.mean(filled))
        rows.append(
            Summary(
                dataset=dataset,
                strategy=strategy,
                mean_accuracy=float(means.mean()),
                std_accuracy=float(means.std(ddof=1)) if len(means) > 1 else 0.0,
                delta_random=float(means.mean() - random.mean()) if random is not None else float("nan"),
                final_accuracy=float(100 * np.mean([run.accuracy[-1] for run in group])),
                query_seconds=float(np.mean([s for run in group for s in run.query_seconds])),
                batch_classes=float(np.mean([c for run in group for c in run.batch_classes])),
                diagnostics=diagnostics,
            )
        )
    return rows


def format_table(rows: list[Summary]) -> str:
    """The main results table in Markdown."""
    lines = [
        "| dataset | strategy | mean acc (%) | std over seeds | vs random (points) | final acc (%) "
        "| classes per batch | query (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.dataset} | {row.strategy} | {row.mean_accuracy:.1f} | {row.std_accuracy:.1f} "
            f"| {row.delta_random:+.1f} | {row.final_accuracy:.1f} | {row.batch_classes:.1f} "
            f"| {row.query_seconds:.3f} |"
        )
    return "\n".join(lines)


def format_diagnostics(rows: list[Summary]) -> str:
    """ALFA-Mix's candidate search per round, averaged over rounds and seeds, in Markdown."""
    lines = [
        "| dataset | strategy | candidates per round | rounds with fill | filled items per round | last cap |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.diagnostics:
            d = row.diagnostics
            lines.append(
                f"| {row.dataset} | {row.strategy} | {d['candidates']:.1f} | {100 * d['rounds_filled']:.0f}% "
                f"| {d['filled']:.1f} | {d['last_cap']:.3f} |"
            )
    return "\n".join(lines)


def format_targets(rows: list[Summary]) -> str:
    """ALFA-Mix (closed form) against the targets: >= 3 points above random and not below entropy."""
    by_key = {(row.dataset, row.strategy): row for row in rows}
    lines = []
    for dataset in dict.fromkeys(row.dataset for row in rows):
        alfamix, random, entropy = (by_key.get((dataset, name)) for name in ("alfamix", "random", "entropy"))
        if alfamix is None or random is None or entropy is None:
            continue
        vs_entropy = alfamix.mean_accuracy - entropy.mean_accuracy
        met = alfamix.delta_random >= 3.0 and vs_entropy >= 0.0
        lines.append(
            f"- {dataset}: alfamix {alfamix.delta_random:+.1f} points vs random, {vs_entropy:+.1f} vs entropy: "
            f"{'met' if met else 'missed'}"
        )
    return "\n".join(lines)


def format_curves(runs: list[RunResult]) -> str:
    """Mean test accuracy (%) over seeds at every number of labels, one row per (dataset, strategy)."""
    n_labels = runs[0].n_labels
    lines = [
        "| dataset | strategy | " + " | ".join(str(n) for n in n_labels) + " |",
        "|---|---|" + "---:|" * len(n_labels),
    ]
    for dataset, strategy in dict.fromkeys((run.dataset, run.strategy) for run in runs):
        accuracy = [run.accuracy for run in runs if run.dataset == dataset and run.strategy == strategy]
        mean = 100 * np.mean(accuracy, axis=0)  # (rounds + 1,)
        lines.append(f"| {dataset} | {strategy} | " + " | ".join(f"{value:.1f}" for value in mean) + " |")
    return "\n".join(lines)


def write_markdown(path: Path, runs: list[RunResult], rows: list[Summary], meta: dict[str, Any]) -> None:
    """The report: protocol, results table, per-point curves, ALFA-Mix diagnostics and the target check."""
    config: SimulationConfig = meta["config"]
    n_last = config.n_initial + config.n_rounds * config.n_per_round
    sizes = "; ".join(
        f"{name}: pool {shape['n_pool']}, test {shape['n_test']}, {shape['dim']}-D"
        for name, shape in meta["datasets"].items()
    )
    text = f"""# Active-learning simulation

Two protocols are simulated. This page is the paper's **batch protocol** from 20 random
labels: the strategies' one-shot queries (`model.alfamix.query` for ALFA-Mix), each batch
labeled whole. How the queue does as Label Studio runs it, a live stream of single labels from
zero with a round after every label, one annotator or a team, is the **live protocol** in
[al_stream.md](al_stream.md) (`bench/stream_simulation.py`, `bench/stream_report.py`).

Generated by `{meta["command"]}` (bench/simulate.py): {meta["load_seconds"]:.0f} s to load the
datasets (embedding them on a cache miss), {meta["simulate_seconds"] / 60:.1f} min to simulate.
Raw per-run numbers: `bench/out/al_simulation.json`.

Protocol: {config.n_initial} random initial labels, +{config.n_per_round} per round, {config.n_rounds} rounds
({config.n_initial} to {n_last} labels, {config.n_rounds + 1} accuracy points per run), seeds {meta["seeds"]};
every strategy of one seed starts from the same initial labels. Head: `model.head.train_head` with
the default `HeadConfig` ({config.head.kind}, {config.head.epochs} epochs), retrained from scratch each
round; accuracy on the held-out test split. Data: {sizes}.

"mean acc" averages the {config.n_rounds + 1} points of a run, then the seeds; "std" is over the seeds'
means; "classes per batch" counts the distinct true classes in a queried batch of {config.n_per_round};
query times are mean wall seconds of one query on the machine that ran it (one torch thread).

![accuracy vs labels](al_simulation.png)

{format_table(rows)}

## Accuracy by number of labels (mean over seeds, %)

{format_curves(runs)}

## ALFA-Mix candidate search

Candidates: pool items whose prediction flips for some anchor at the caps evaluated, averaged over
rounds and seeds. Filled: batch items that are not candidates (the query tops the batch up with the
least-confident rest when there are fewer than n_query candidates).

{format_diagnostics(rows)}

## Targets

ALFA-Mix (closed form) at least 3 points above random and not below entropy in mean accuracy:

{format_targets(rows)}
"""
    path.write_text(text)


def plot(path: Path, runs: list[RunResult]) -> None:
    """One subplot per dataset: mean accuracy vs labels per strategy, with a +- one std band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(run.dataset for run in runs))
    figure, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.2), squeeze=False)
    for axis, dataset in zip(axes[0], datasets, strict=True):
        for strategy in dict.fromkeys(run.strategy for run in runs):
            group = [run for run in runs if run.dataset == dataset and run.strategy == strategy]
            if not group:
                continue
            accuracy = 100 * np.array([run.accuracy for run in group])  # (S, rounds + 1)
            mean, std = accuracy.mean(axis=0), accuracy.std(axis=0, ddof=1) if len(group) > 1 else 0.0
            (line,) = axis.plot(group[0].n_labels, mean, marker="o", markersize=3, label=strategy)
            axis.fill_between(group[0].n_labels, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        axis.set_title(dataset)
        axis.set_xlabel("number of labels")
        axis.set_ylabel("test accuracy (%)")
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
