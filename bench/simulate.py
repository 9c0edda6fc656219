"""Offline active-learning simulation: ALFA-Mix against random, entropy and coreset sampling.

The protocol of ALFA-Mix's evaluation (Parvaneh et al., CVPR 2022, arXiv:2203.07034)
on frozen features: start from ``initial`` random labels, train a linear head
(``model.head.train_head``), measure test accuracy, then each round query
``per_round`` items with a strategy, reveal their true labels, retrain and
measure again. Every strategy of one seed starts from the same initial labels.

Run ``python -m bench.simulate`` (see ``--help``). Writes ``<out>/al_simulation.png``,
``<out>/al_simulation.md`` and the raw per-run numbers in ``bench/out/al_simulation.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.datasets import DATASETS, DatasetSplits, load_dataset
from model.alfamix.query import QueryConfig, query
from model.head import HeadConfig, predict_proba, train_head

logger = logging.getLogger(__name__)

JSON_PATH = Path(__file__).resolve().parent / "out" / "al_simulation.json"
# ALFA-Mix's largest temporary tensor, in elements. Only memory and speed depend on it
# (same candidates and batch): on 2 CPU cores a 4k x 1280 learned query took 3.2 s
# with 2**20 against 11 s with the default 2**24, which thrashes the cache.
QUERY_CHUNK_ELEMENTS = 1 << 20
# A strategy maps (z_lab (L, D), y_lab (L,), z_unl (N, D), head, n_query, random_state)
# to indices into z_unl and a dict of diagnostics.
Strategy = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, nn.Module, int, int], tuple[np.ndarray, dict[str, float]]
]


@dataclass(frozen=True)
class SimulationConfig:
    """One protocol: labels start at n_initial and grow by n_per_round for n_rounds rounds."""

    n_initial: int = 20
    n_per_round: int = 20
    n_rounds: int = 10
    head: HeadConfig = field(default_factory=HeadConfig)


@dataclass
class RunResult:
    """One (dataset, strategy, seed) run: n_rounds + 1 accuracy points and n_rounds queries."""

    dataset: str
    strategy: str
    seed: int
    n_labels: list[int] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    query_seconds: list[float] = field(default_factory=list)
    batch_classes: list[int] = field(default_factory=list)  # distinct true classes in each queried batch
    queried: list[list[int]] = field(default_factory=list)  # pool indices of each round's batch
    diagnostics: list[dict[str, float]] = field(default_factory=list)


def query_random(
    z_lab: torch.Tensor, y_lab: torch.Tensor, z_unl: torch.Tensor, head: nn.Module, n_query: int, random_state: int
) -> tuple[np.ndarray, dict[str, float]]:
    """Uniformly random items, seeded by the run's seed and the labeled-set size (so each round differs)."""
    rng = np.random.default_rng([random_state, len(z_lab)])
    return rng.choice(len(z_unl), size=min(n_query, len(z_unl)), replace=False).astype(np.int64), {}


def query_entropy(
    z_lab: torch.Tensor, y_lab: torch.Tensor, z_unl: torch.Tensor, head: nn.Module, n_query: int, random_state: int
) -> tuple[np.ndarray, dict[str, float]]:
    """The items with the highest predictive entropy of the head (ties by index)."""
    probs = predict_proba(head, z_unl)  # (N, C)
    entropy = -(probs * probs.clamp(min=1e-12).log()).sum(dim=1).numpy()  # (N,)
    order = np.lexsort((np.arange(len(entropy)), -entropy))
    return order[:n_query].astype(np.int64), {}


def query_coreset(
    z_lab: torch.Tensor, y_lab: torch.Tensor, z_unl: torch.Tensor, head: nn.Module, n_query: int, random_state: int
) -> tuple[np.ndarray, dict[str, float]]:
    """K-center greedy (Sener & Savarese, 2018): repeatedly take the item farthest from everything labeled."""
    sq_unl = (z_unl * z_unl).sum(dim=1)  # (N,)

    def sq_dist(centres: torch.Tensor) -> torch.Tensor:
        return (sq_unl[:, None] - 2 * z_unl @ centres.T + (centres * centres).sum(dim=1)).clamp(min=0)  # (N, m)

    closest = sq_dist(z_lab).amin(dim=1)  # (N,)
    chosen: list[int] = []
    for _ in range(min(n_query, len(z_unl))):
        index = int(closest.argmax())
        chosen.append(index)
        closest = torch.minimum(closest, sq_dist(z_unl[index : index + 1])[:, 0])
        closest[index] = -1.0  # never again, even where duplicated rows leave it at distance 0
    return np.array(chosen, dtype=np.int64), {}


def alfamix_strategy(mode: str) -> Strategy:
    """ALFA-Mix ``model.alfamix.query`` in ``mode``, reporting its candidate count and fill."""

    def query_alfamix(
        z_lab: torch.Tensor, y_lab: torch.Tensor, z_unl: torch.Tensor, head: nn.Module, n_query: int, random_state: int
    ) -> tuple[np.ndarray, dict[str, float]]:
        config = QueryConfig(n_query=n_query, mode=mode, max_chunk_elements=QUERY_CHUNK_ELEMENTS)
        result = query(z_lab, y_lab, z_unl, head, config, random_state=random_state)
        diagnostics = {
            "candidates": float(result.candidates.sum()),
            "filled": float((~result.candidates[result.selected]).sum()),  # batch items that never flipped
            "last_cap": float(result.caps[-1]),  # a non-empty pool always evaluates at least one cap
            "n_caps": float(len(result.caps)),
        }
        return result.selected, diagnostics

    return query_alfamix


STRATEGIES: dict[str, Strategy] = {
    "random": query_random,
    "entropy": query_entropy,
    "coreset": query_coreset,
    "alfamix": alfamix_strategy("closed_form"),
    "alfamix_learned": alfamix_strategy("learned"),
}


def simulate_run(data: DatasetSplits, strategy: str, seed: int, config: SimulationConfig) -> RunResult:
    """One active-learning run on ``data`` with ``strategy``; the initial labels depend on ``seed`` only."""
    z_pool, y_pool = torch.from_numpy(data.z_pool), torch.from_numpy(data.y_pool)  # (N, D), (N,)
    z_test, y_test = torch.from_numpy(data.z_test), data.y_test  # (T, D), (T,)
    n_pool = len(y_pool)
    labeled = np.zeros(n_pool, dtype=bool)  # (N,)
    labeled[np.random.default_rng(seed).choice(n_pool, size=config.n_initial, replace=False)] = True
    run = RunResult(data.name, strategy, seed)
    for round_index in range(config.n_rounds + 1):
        lab_rows = np.flatnonzero(labeled)  # (L,)
        z_lab, y_lab = z_pool[lab_rows], y_pool[lab_rows]  # (L, D), (L,) int64
        head = train_head(z_lab, y_lab, data.n_classes, config.head, random_state=seed)
        accuracy = float((predict_proba(head, z_test).argmax(dim=1).numpy() == y_test).mean())
        run.n_labels.append(len(lab_rows))
        run.accuracy.append(accuracy)
        if round_index == config.n_rounds:
            break
        unl_rows = np.flatnonzero(~labeled)  # (N - L,)
        started = time.perf_counter()
        picks, diagnostics = STRATEGIES[strategy](z_lab, y_lab, z_pool[unl_rows], head, config.n_per_round, seed)
        seconds = time.perf_counter() - started
        new_rows = unl_rows[picks]  # (n_per_round,)
        if len(np.unique(new_rows)) != len(new_rows):
            raise RuntimeError(f"{strategy} returned duplicate items in round {round_index}: {sorted(new_rows)}")
        labeled[new_rows] = True
        run.query_seconds.append(seconds)
        run.batch_classes.append(len(np.unique(data.y_pool[new_rows])))
        run.queried.append(new_rows.tolist())
        run.diagnostics.append(diagnostics)
        logger.info(
            "%s %s seed=%d round=%d labels=%d acc=%.3f query=%.2fs %s",
            data.name, strategy, seed, round_index, len(lab_rows), accuracy, seconds, diagnostics or "",
        )  # fmt: skip
    logger.info("%s %s seed=%d final acc=%.3f", data.name, strategy, seed, run.accuracy[-1])
    return run


def simulate(
    datasets: list[DatasetSplits], strategies: list[str], seeds: list[int], config: SimulationConfig
) -> list[RunResult]:
    """Every (dataset, seed, strategy) run, in that nesting order."""
    runs: list[RunResult] = []
    for data in datasets:
        for seed in seeds:
            runs.extend(simulate_run(data, strategy, seed, config) for strategy in strategies)
    return runs


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.simulate", description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=3, help="runs seeds 0 .. SEEDS-1")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--initial", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads for the simulation (2 were slower on 2 cores)"
    )
    parser.add_argument("--json", type=Path, default=JSON_PATH, help="raw per-run numbers")
    parser.add_argument("--from-json", action="store_true", help="redo the report from --json without simulating")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = SimulationConfig(n_initial=args.initial, n_per_round=args.per_round, n_rounds=args.rounds)
    seeds = list(range(args.seeds))
    command = "python -m bench.simulate " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.from_json:
        saved = json.loads(args.json.read_text())
        runs = [RunResult(**run) for run in saved["runs"]]
        saved["config"] = SimulationConfig(**{**saved["config"], "head": HeadConfig(**saved["config"]["head"])})
    else:
        started = time.perf_counter()
        datasets = [load_dataset(name) for name in args.datasets]  # embeds on a cache miss, with all threads
        load_seconds = time.perf_counter() - started
        shapes = {}
        for data in datasets:
            (n_pool, dim), n_test = data.z_pool.shape, len(data.y_test)
            shapes[data.name] = {"n_pool": n_pool, "n_test": n_test, "dim": dim}
            logger.info("%s: pool (%d, %d), test (%d, %d)", data.name, n_pool, dim, n_test, dim)
        torch.set_num_threads(args.threads)
        runs = simulate(datasets, args.strategies, seeds, config)
        simulate_seconds = time.perf_counter() - started - load_seconds
        logger.info(
            "loaded %d datasets in %.0f s, simulated %d runs in %.0f s",
            len(datasets),
            load_seconds,
            len(runs),
            simulate_seconds,
        )
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "command": command,
            "seeds": seeds,
            "config": asdict(config),
            "datasets": shapes,
            "load_seconds": load_seconds,
            "simulate_seconds": simulate_seconds,
            "runs": [asdict(run) for run in runs],
        }
        args.json.write_text(json.dumps(payload, indent=1))
        saved = {**payload, "config": config}
    rows = summarise(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(args.out / "al_simulation.png", runs)
    write_markdown(args.out / "al_simulation.md", runs, rows, saved)
    print(format_table(rows))
    print()
    print(format_diagnostics(rows))
    print()
    print(format_targets(rows))


if __name__ == "__main__":
    main()
