"""A learning curve without a held-out set: how often annotators kept the pre-selected class.

When an annotator labels a task that showed the live model's prediction, that prediction's
correctness is a test point for the model (the task was not in its training set). The
queue serves the tasks ALFA-Mix finds hardest first, so this accuracy is lower than on the
pool as a whole: read its trend, not its level.
Each round judges the version before it on the labels submitted since that version went
live; this module turns the round history into (labels trained on, accuracy) points with a
95% Wilson interval, a plot, and a plain-words stop signal.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MIN_JUDGED = 20  # labels pooled into one curve point
STOP_WINDOW = 200  # labels
STOP_GAIN = 0.01  # one accuracy point
AUDIT_WINDOW = 50  # audit tasks pooled into the pool-accuracy estimate: about +-14 points at 95%


@dataclass(frozen=True)
class CurvePoint:
    n_labels: int  # labels the judged model was trained on
    model_version: str
    n_judged: int  # labels that judged it
    accuracy: float
    low: float  # 95% Wilson interval
    high: float


def learning_curve(rounds: Sequence[dict[str, Any]], min_judged: int = MIN_JUDGED) -> list[CurvePoint]:
    """Points of (labels trained on, pre-label accuracy), one per group of consecutive versions.

    Rounds come every few labels, so one version is often judged on 3 or 4 labels; versions
    are pooled until at least ``min_judged`` labels judged them. A point carries the last
    pooled version and the labels it was trained on.
    """
    points = []
    previous: dict[str, Any] | None = None  # the version each round judges
    last_judged: dict[str, Any] = {}
    hits = judged = 0
    for record in rounds:
        if record.get("status") != "done" or not record.get("model_version"):
            continue
        n = int(record.get("n_prelabeled") or 0)
        if previous is not None and n > 0 and record.get("prelabel_accuracy") is not None:
            hits += round(float(record["prelabel_accuracy"]) * n)
            judged += n
            last_judged = previous
            if judged >= min_judged:
                points.append(_point(last_judged, hits, judged))
                hits = judged = 0
        previous = record
    if judged:
        points.append(_point(last_judged, hits, judged))  # the latest versions, even if fewer labels judged them
    return points


@dataclass(frozen=True)
class AuditEstimate:
    """Pre-label accuracy on the audit tasks: drawn at random from the pool, so unbiased for it."""

    n_judged: int
    accuracy: float
    low: float  # 95% Wilson interval
    high: float


def audit_estimate(rounds: Sequence[dict[str, Any]], window: int = AUDIT_WINDOW) -> AuditEstimate | None:
    """The latest audit tasks judged, pooled from the newest round back until ``window`` are;
    None before the first. Older models pre-labeled some of them, so while accuracy still rises
    this reads a little below the live model."""
    hits = judged = 0
    for record in reversed(rounds):
        if record.get("status") == "done" and record.get("n_audited"):
            hits += int(record.get("audit_hits") or 0)
            judged += int(record["n_audited"])
            if judged >= window:
                break
    if judged == 0:
        return None
    low, high = wilson_interval(hits, judged)
    return AuditEstimate(judged, hits / judged, low, high)


def _point(judged_version: dict[str, Any], hits: int, judged: int) -> CurvePoint:
    low, high = wilson_interval(hits, judged)
    return CurvePoint(
        int(judged_version["n_labeled_tasks"]), str(judged_version["model_version"]), judged, hits / judged, low, high
    )


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Score interval of a binomial proportion; sensible for small n and for 0 or 1."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def stop_signal(points: Sequence[CurvePoint]) -> str:
    """Whether the last STOP_WINDOW labels still moved pre-label accuracy, in one sentence."""
    if not points:
        return "No pre-labels judged yet: the first numbers come after the second round."
    last = points[-1]
    earlier = [p for p in points if p.n_labels <= last.n_labels - STOP_WINDOW]
    if not earlier:
        return (
            f"Pre-label accuracy is {last.accuracy:.0%} after {last.n_labels} labels; "
            f"judging the trend needs {STOP_WINDOW} labels of history."
        )
    reference = earlier[-1]
    gain = last.accuracy - reference.accuracy
    span = last.n_labels - reference.n_labels
    if gain < STOP_GAIN:
        return (
            f"The last {span} labels changed pre-label accuracy by {gain * 100:+.1f} points "
            f"(to {last.accuracy:.0%}): more labels may no longer pay off."
        )
    return f"The last {span} labels raised pre-label accuracy by {gain * 100:+.1f} points, to {last.accuracy:.0%}."


def plot_png(points: Sequence[CurvePoint], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # no display on a server
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    if points:
        x = [p.n_labels for p in points]
        axes.fill_between(x, [p.low for p in points], [p.high for p in points], alpha=0.25, label="95% interval")
        axes.plot(x, [p.accuracy for p in points], marker="o", label="pre-label accuracy")
        axes.legend(loc="lower right")
    else:
        axes.text(0.5, 0.5, "no pre-labels judged yet", ha="center", va="center", transform=axes.transAxes)
    axes.set(xlabel="labels the model was trained on", ylabel="accuracy", ylim=(0, 1), title=title)
    axes.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
