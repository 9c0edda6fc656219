"""A learning curve without a held-out set: how often annotators kept the pre-selected class.

When an annotator labels a task that showed the live model's prediction, that prediction's
correctness is a test point for the model (the task was not in its training set). The
queue serves the tasks ALFA-Mix finds hardest first, so this accuracy is lower than on the
pool as a whole: read its trend, not its level.
Each round judges the version before it on the labels submitted since that version went
live; this module turns the round history into (labels trained on, accuracy) points with a
95% Wilson interval and a plain-words stop signal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from backend.state.records import RoundRecord

MIN_JUDGED = 20  # labels pooled into one curve point
MAX_POINTS = 200  # beyond this, neighbouring points are pooled in pairs, so a curve stays cheap to keep and draw
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


@dataclass
class CurveBuilder:
    """Builds the curve one record at a time, so a summary can keep it up to date as rounds end.

    Rounds come every few labels, so one version is often judged on 3 or 4 labels; versions
    are pooled until at least ``min_judged`` labels judged them. A point carries the last
    pooled version and the labels it was trained on.
    """

    min_judged: int = MIN_JUDGED
    closed: list[CurvePoint] = field(default_factory=list)
    previous: tuple[str, int] | None = None  # the version the next round judges: (name, labels it had)
    last_judged: tuple[str, int] | None = None
    hits: int = 0
    judged: int = 0

    def add(self, record: RoundRecord) -> None:
        if not record.done or not record.model_version:
            return
        n = record.n_prelabeled
        if self.previous is not None and n > 0 and record.prelabel_accuracy is not None:
            self.hits += round(record.prelabel_accuracy * n)
            self.judged += n
            self.last_judged = self.previous
            if self.judged >= self.min_judged:
                self.closed.append(_point(self.last_judged, self.hits, self.judged))
                self.hits = self.judged = 0
                if len(self.closed) > MAX_POINTS:
                    self.closed = _pool_pairs(self.closed)
        self.previous = (record.model_version, record.n_labeled_tasks)

    def points(self) -> list[CurvePoint]:
        """The closed points, then the latest versions even if fewer labels judged them."""
        if self.judged and self.last_judged is not None:
            return [*self.closed, _point(self.last_judged, self.hits, self.judged)]
        return list(self.closed)


def learning_curve(rounds: Iterable[RoundRecord], min_judged: int = MIN_JUDGED) -> list[CurvePoint]:
    """Points of (labels trained on, pre-label accuracy), one per group of consecutive versions."""
    builder = CurveBuilder(min_judged)
    for record in rounds:
        builder.add(record)
    return builder.points()


@dataclass(frozen=True)
class AuditEstimate:
    """Pre-label accuracy on the audit tasks: drawn at random from the pool, so unbiased for it."""

    n_judged: int
    accuracy: float
    low: float  # 95% Wilson interval
    high: float


@dataclass
class AuditWindow:
    """The latest audit tasks judged, pooled from the newest round back until ``window`` are.

    Older models pre-labeled some of them, so while accuracy still rises the estimate reads a
    little below the live model."""

    window: int = AUDIT_WINDOW
    rounds: list[tuple[int, int]] = field(default_factory=list)  # (hits, judged) per audited round, oldest first

    def add(self, record: RoundRecord) -> None:
        if not record.done or not record.n_audited:
            return
        self.rounds.append((record.audit_hits, record.n_audited))
        # Drop the oldest rounds the window no longer needs.
        while len(self.rounds) > 1 and sum(n for _, n in self.rounds[1:]) >= self.window:
            self.rounds.pop(0)

    def estimate(self) -> AuditEstimate | None:
        """None before the first audit task is judged."""
        hits = judged = 0
        for round_hits, round_judged in reversed(self.rounds):
            hits += round_hits
            judged += round_judged
            if judged >= self.window:
                break
        if judged == 0:
            return None
        low, high = wilson_interval(hits, judged)
        return AuditEstimate(judged, hits / judged, low, high)


def audit_estimate(rounds: Iterable[RoundRecord], window: int = AUDIT_WINDOW) -> AuditEstimate | None:
    audit = AuditWindow(window)
    for record in rounds:
        audit.add(record)
    return audit.estimate()


def _pool_pairs(points: list[CurvePoint]) -> list[CurvePoint]:
    """Neighbours pooled two by two; a pooled point carries the later version, as pooling always does."""
    pooled = []
    for first, second in zip(points[0::2], points[1::2], strict=False):
        hits = round(first.accuracy * first.n_judged) + round(second.accuracy * second.n_judged)
        pooled.append(_point((second.model_version, second.n_labels), hits, first.n_judged + second.n_judged))
    return pooled + points[len(pooled) * 2 :]


def _point(judged_version: tuple[str, int], hits: int, judged: int) -> CurvePoint:
    low, high = wilson_interval(hits, judged)
    model_version, n_labels = judged_version
    return CurvePoint(n_labels, model_version, judged, hits / judged, low, high)


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
