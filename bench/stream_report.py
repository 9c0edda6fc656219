"""Report of the live-stream simulation: tables, targets and a plot from ``bench.stream_simulation``'s JSON.

``python -m bench.stream_report --json bench/out/stream_mnist.json ... --out docs`` writes ``al_stream.md``
and ``al_stream.png`` under ``--out`` and prints the tables. Accuracies are in percent, differences in
points; a run's figure is the mean of its accuracy points (0, 20, ..., 200 labels).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Run = dict[str, Any]  # one StreamRun as bench.stream_simulation writes it (dataclasses.asdict)
Key = tuple[str, str, str]  # (dataset, protocol, policy)
PROTOCOLS = ("live", "live_every5", "team3", "live_audit5", "batch")
POLICIES = ("alfamix", "alfamix_today", "random", "entropy", "margin", "coreset")
RIVALS = ("entropy", "margin", "coreset")  # target (b): live alfamix must beat each of them
EVENTS = ("new", "kept", "stale")
NAN = float("nan")


@dataclass(frozen=True)
class Summary:
    """One (dataset, protocol, policy): figures in percent, averaged over seeds."""

    mean: float  # per run the mean over its accuracy points, then the mean over seeds
    std: float  # over seeds of the per-run means (ddof=1; 0 with one seed)
    vs_random: float  # mean minus random's, same dataset and protocol; nan without random runs
    final: float  # accuracy at the last point (200 labels), mean over seeds
    served_first: float  # labels whose task was the first of the latest queue, over all labels served
    n_seeds: int


def load_runs(paths: list[Path], training: str = "head") -> list[Run]:
    """The runs of several JSON files that trained ``training``; a (dataset, protocol, policy,
    seed) run again in a later file replaces the earlier one (a rerun after a fix)."""
    runs = {
        (run["dataset"], run["protocol"], run["policy"], run["seed"]): run
        for path in paths
        for run in json.loads(path.read_text())["runs"]
        if run.get("training", "head") == training
    }
    return list(runs.values())


def run_mean(run: Run) -> float:
    return 100 * float(np.mean(run["accuracy"]))


def _rank(name: str, order: tuple[str, ...]) -> int:
    return order.index(name) if name in order else len(order)


def group_runs(runs: list[Run]) -> dict[Key, list[Run]]:
    """Runs by key: datasets in the order they came, protocols and policies in the fixed order, seeds ascending."""
    datasets = list(dict.fromkeys(run["dataset"] for run in runs))
    ordered = sorted(
        runs,
        key=lambda r: (datasets.index(r["dataset"]), _rank(r["protocol"], PROTOCOLS), r["protocol"],
                       _rank(r["policy"], POLICIES), r["policy"], r["seed"]),
    )  # fmt: skip
    groups: dict[Key, list[Run]] = {}
    for run in ordered:
        groups.setdefault((run["dataset"], run["protocol"], run["policy"]), []).append(run)
    return groups


def summarise(runs: list[Run]) -> dict[Key, Summary]:
    groups = group_runs(runs)
    means = {key: np.array([run_mean(run) for run in group]) for key, group in groups.items()}  # (S,) each
    summaries = {}
    for (dataset, protocol, policy), group in groups.items():
        m, random = means[(dataset, protocol, policy)], means.get((dataset, protocol, "random"))
        served = sum(run["served"] for run in group)
        summaries[(dataset, protocol, policy)] = Summary(
            mean=float(m.mean()),
            std=float(m.std(ddof=1)) if len(m) > 1 else 0.0,
            vs_random=float(m.mean() - random.mean()) if random is not None else NAN,
            final=100 * float(np.mean([run["accuracy"][-1] for run in group])),
            served_first=100 * sum(run["served_first"] for run in group) / served if served else NAN,
            n_seeds=len(group),
        )
    return summaries


def mean_of(summaries: dict[Key, Summary], dataset: str, protocol: str, policy: str = "alfamix") -> float:
    """The summary's mean, nan where that combination was not simulated (nan then spreads to differences)."""
    summary = summaries.get((dataset, protocol, policy))
    return summary.mean if summary is not None else NAN


def paired_gap(runs: list[Run], dataset: str, protocol: str, other: str, policy: str = "alfamix") -> float:
    """Mean over the seeds both protocols ran of (run mean under ``protocol`` − under ``other``); nan if none."""
    by_seed = {
        p: {
            run["seed"]: run_mean(run)
            for run in runs
            if (run["dataset"], run["protocol"], run["policy"]) == (dataset, p, policy)
        }
        for p in (protocol, other)
    }
    seeds = sorted(set(by_seed[protocol]) & set(by_seed[other]))
    return float(np.mean([by_seed[protocol][s] - by_seed[other][s] for s in seeds])) if seeds else NAN


def rounded(value: float) -> float:
    """One decimal, as printed; adding 0.0 turns -0.0 into 0.0 so that -0.04 reads +0.0, not -0.0."""
    return round(value, 1) + 0.0


def cell(value: float, signed: bool = False) -> str:
    value = rounded(value)
    return "–" if np.isnan(value) else f"{value:+.1f}" if signed else f"{value:.1f}"


def table(header: list[str], rows: list[list[str]], n_text: int) -> str:
    """Markdown; the first n_text columns left-aligned, the numbers right-aligned."""
    align = ["---"] * n_text + ["---:"] * (len(header) - n_text)
    return "\n".join("| " + " | ".join(row) + " |" for row in [header, align, *rows])


def _datasets(summaries: dict[Key, Summary]) -> list[str]:
    return list(dict.fromkeys(dataset for dataset, _, _ in summaries))


def format_protocol(summaries: dict[Key, Summary], protocol: str, served: bool) -> str:
    """One row per (dataset, policy) of one protocol."""
    header = ["dataset", "policy", "mean acc (%)", "std", "vs random (points)", "final acc (%)"]
    header += ["served the queue's first (%)"] * served + ["seeds"]
    rows = [
        [dataset, policy, cell(s.mean), cell(s.std), cell(s.vs_random, True), cell(s.final)]
        + [cell(s.served_first)] * served
        + [str(s.n_seeds)]
        for (dataset, p, policy), s in summaries.items()
        if p == protocol
    ]
    return table(header, rows, 2)


def format_alfamix_protocols(summaries: dict[Key, Summary], runs: list[Run]) -> str:
    """ALFA-Mix's mean under every protocol, and the differences to live over the seeds both ran, per dataset."""
    rows = []
    for dataset in _datasets(summaries):
        means = (mean_of(summaries, dataset, p) for p in PROTOCOLS)
        diffs = [paired_gap(runs, dataset, p, "live") for p in ("live_every5", "team3", "live_audit5")]
        diffs.append(paired_gap(runs, dataset, "live", "batch"))
        rows.append([dataset, *(cell(v) for v in means)] + [cell(d, True) for d in diffs])
    header = ["dataset", *PROTOCOLS, "every5 − live", "team3 − live", "audit5 − live", "live − batch"]
    return table(header, rows, 1)


def _verdict(label: str, value: float, met: bool, text: str) -> str:
    return f"({label}) n/a" if np.isnan(value) else f"({label}) {'met' if met else 'missed'}: {text}"


def _target_rivals(live: float, rivals: dict[str, float]) -> str:
    """Target (b), live alfamix above every rival simulated; when missed, it names only those it is not above."""
    diffs = {name: rounded(live - mean) for name, mean in rivals.items()}
    diffs = {name: diff for name, diff in diffs.items() if not np.isnan(diff)}
    below = {name: diff for name, diff in diffs.items() if diff <= 0}
    listed = ", ".join(f"{name} ({diff:+.1f})" for name, diff in (below or diffs).items())
    return "(b) n/a" if not diffs else f"(b) {'missed: not above' if below else 'met: above'} {listed}"


def check_targets(summaries: dict[Key, Summary], runs: list[Run]) -> list[str]:
    """One line per dataset with the four targets. Verdicts use the differences rounded as printed, so that
    "+3.0 ... missed" cannot appear; protocols are compared over the seeds both ran."""
    lines = []
    for dataset in _datasets(summaries):
        live = mean_of(summaries, dataset, "live")
        gap = rounded(live - mean_of(summaries, dataset, "live", "random"))
        vs_batch = rounded(paired_gap(runs, dataset, "live", "batch"))
        vs_team = rounded(paired_gap(runs, dataset, "team3", "live"))
        parts = [
            _verdict("a", gap, gap >= 3.0, f"alfamix {gap:+.1f} points vs random (target >= +3.0)"),
            _target_rivals(live, {name: mean_of(summaries, dataset, "live", name) for name in RIVALS}),
            _verdict("c", vs_batch, abs(vs_batch) <= 1.0, f"live − batch {vs_batch:+.1f} points (target within 1.0)"),
            _verdict("d", vs_team, abs(vs_team) <= 1.0, f"team3 − live {vs_team:+.1f} points (target within 1.0)"),
        ]
        lines.append(f"- {dataset}: " + "; ".join(parts))
    return lines


def format_per_seed(runs: list[Run]) -> str:
    seeds = sorted({run["seed"] for run in runs})
    rows = []
    for key, group in group_runs(runs).items():
        by_seed = {run["seed"]: run_mean(run) for run in group}
        rows.append([*key, *(cell(by_seed.get(seed, NAN)) for seed in seeds)])
    return table(["dataset", "protocol", "policy", *(f"seed {seed}" for seed in seeds)], rows, 3)


def curves(runs: list[Run], protocol: str) -> dict[Key, tuple[list[int], np.ndarray]]:
    """Mean accuracy (%) over seeds at every number of labels, per key of one protocol."""
    return {
        key: (group[0]["n_labels"], 100 * np.mean([run["accuracy"] for run in group], axis=0))  # (P,)
        for key, group in group_runs(runs).items()
        if key[1] == protocol
    }


def format_curves(runs: list[Run]) -> str:
    by_key = curves(runs, "live")
    n_labels = next(iter(by_key.values()))[0] if by_key else []
    rows = [[dataset, policy, *(cell(v) for v in mean)] for (dataset, _, policy), (_, mean) in by_key.items()]
    return table(["dataset", "policy", *(str(n) for n in n_labels)], rows, 2)


def format_audit(runs: list[Run], summaries: dict[Key, Summary]) -> str:
    """Audit tasks of live_audit5 alfamix: the estimate they give, the truth it estimates, what they cost."""
    rows = []
    for (dataset, protocol, policy), group in group_runs(runs).items():
        if (protocol, policy) != ("live_audit5", "alfamix"):
            continue
        judged = sum(run["audit_judged"] for run in group)
        estimate = 100 * sum(run["audit_hits"] for run in group) / judged if judged else NAN
        pool = [value for run in group for value in run["pool_accuracy"]]
        truth = 100 * float(np.mean(pool)) if pool else NAN
        cost = paired_gap(runs, dataset, "live_audit5", "live")
        rows.append([dataset, str(judged), cell(estimate), cell(truth), cell(estimate - truth, True), cell(cost, True)])
    header = ["dataset", "audit tasks judged", "audit estimate (%)", "pool accuracy (%)", "estimate − pool"]
    return table([*header, "audit5 − live (points)"], rows, 1)


def format_events(runs: list[Run]) -> str:
    rows = [
        [dataset, *(f"{np.mean([run['batch_events'].get(e, 0) for run in group]):.1f}" for e in EVENTS)]
        for (dataset, protocol, policy), group in group_runs(runs).items()
        if (protocol, policy) == ("live", "alfamix")
    ]
    return table(["dataset", *EVENTS], rows, 1)


AUDIT_NOTE = """An audit task's pre-label is the live head's class: the estimate is the share of audit tasks it got
right (seeds pooled); pool accuracy is the live head's true accuracy on the unlabeled pool at those moments; the last
column is what the audit slots cost in label efficiency."""
TARGETS_NOTE = """(a) live alfamix >= random + 3 points; (b) live alfamix above entropy, margin and coreset;
(c) |live − batch alfamix| <= 1 point; (d) |team3 − live alfamix| <= 1 point."""
PAIRED_NOTE = """Means are over the seeds each protocol ran; the differences are over the seeds both ran (paired)."""
EVENTS_NOTE = "new: no batch to carry; kept: the carried batch survives the round; stale: the model moved on from it."
PROTOCOL_NOTE = """Protocol: no label at first. In **live** a round (train the head on every label so far, build
the queue, push its front as predictions) runs before the first label and after every label, and the annotator
takes the task Label Studio would serve; **live_every5** runs a round every 5 labels, **team3** has three
annotators each taking a random task among the first four, **live_audit5** draws 5% of a new batch at random as
audit tasks, and **batch** is the paper's protocol (query 20, label them all, retrain). Test accuracy every 20
labels up to 200; "mean acc" averages a run's points, then the seeds; "std" is over the seeds' means."""


def format_tables(runs: list[Run]) -> str:
    """Every table of the report under its heading; the markdown file is a header plus this."""
    s = summarise(runs)
    sections = [
        ("## Live protocol", format_protocol(s, "live", served=True)),
        ("## ALFA-Mix under each protocol (mean acc, %)", PAIRED_NOTE, format_alfamix_protocols(s, runs)),
        ("### Batch protocol, every policy", format_protocol(s, "batch", served=False)),
        ("## Targets", TARGETS_NOTE, "\n".join(check_targets(s, runs))),
        ("## Mean accuracy per seed (%)", format_per_seed(runs)),
        ("## Accuracy by number of labels, live protocol (mean over seeds, %)", format_curves(runs)),
        ("## Audit (live_audit5, alfamix)", AUDIT_NOTE, format_audit(runs, s)),
        ("## Batch events of live alfamix (mean count per run)", EVENTS_NOTE, format_events(runs)),
    ]
    return "\n\n".join(part for section in sections for part in section) + "\n"


def write_markdown(path: Path, runs: list[Run], command: str) -> None:
    title = "# Active learning on a live stream of labels"
    source = f"Generated by `{command}` (bench/stream_report.py) from the runs of `python -m bench.stream_simulation`."
    figure = "![accuracy vs labels](al_stream.png)"
    path.write_text("\n\n".join([title, source, PROTOCOL_NOTE, figure, format_tables(runs)]))


def plot(path: Path, runs: list[Run]) -> None:
    """One subplot per dataset: live protocol per policy, and batch alfamix dashed; one legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    live, batch = curves(runs, "live"), curves(runs, "batch")
    datasets = list(dict.fromkeys(run["dataset"] for run in runs))
    figure, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    handles: dict[str, Any] = {}
    for axis, dataset in zip(axes[0], datasets, strict=True):
        for (d, _, policy), (n_labels, mean) in live.items():
            if d == dataset:
                (handles[policy],) = axis.plot(n_labels, mean, marker="o", markersize=3, label=policy)
        if (dataset, "batch", "alfamix") in batch:
            n_labels, mean = batch[(dataset, "batch", "alfamix")]
            (handles["alfamix, batch"],) = axis.plot(n_labels, mean, "k--", label="alfamix, batch")
        axis.set(title=dataset, xlabel="number of labels", ylabel="test accuracy (%)")
        axis.grid(alpha=0.3)
    figure.legend(list(handles.values()), list(handles), loc="lower center", ncol=len(handles), fontsize=8)
    figure.tight_layout(rect=(0, 0.08, 1, 1))  # room for the shared legend below the plots
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.stream_report", description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, nargs="+", required=True, help="stream_simulation outputs")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="folder for al_stream.md and .png")
    args = parser.parse_args(argv)
    runs = load_runs(args.json)
    args.out.mkdir(parents=True, exist_ok=True)
    write_markdown(args.out / "al_stream.md", runs, " ".join(["python -m bench.stream_report", *argv]))
    plot(args.out / "al_stream.png", runs)
    print(format_tables(runs))


if __name__ == "__main__":
    main()
