"""Learning curve from the round history: points, intervals, the stop signal, the audit estimate."""

from __future__ import annotations

import pytest

from backend.state.learning_curve import (
    MAX_POINTS,
    CurvePoint,
    audit_estimate,
    learning_curve,
    stop_signal,
    wilson_interval,
)
from backend.state.records import RoundRecord


def done(version: str, labels: int, judged: int = 0, accuracy: float | None = None) -> RoundRecord:
    return RoundRecord(
        "done", 0.0, model_version=version, n_labeled_tasks=labels, n_prelabeled=judged, prelabel_accuracy=accuracy
    )


def test_each_round_judges_the_version_before_it() -> None:
    rounds = [
        done("v1", 10),
        RoundRecord("failed", 0.0, error="Label Studio down"),
        done("v2", 20, judged=10, accuracy=0.8),  # judges v1, trained on 10 labels
        RoundRecord("done", 0.0, n_labeled_tasks=20),  # nothing left to rank: no version
        done("v3", 30, judged=5, accuracy=0.0),  # judges v2
    ]
    points = learning_curve(rounds, min_judged=1)
    assert [(p.n_labels, p.model_version, p.n_judged, p.accuracy) for p in points] == [
        (10, "v1", 10, 0.8),
        (20, "v2", 5, 0.0),
    ]
    assert (points[0].low, points[0].high) == pytest.approx((0.4902, 0.9433), abs=1e-4)


def test_versions_judged_on_few_labels_are_pooled() -> None:
    rounds = [
        done("v1", 5),
        done("v2", 9, judged=4, accuracy=0.5),
        done("v3", 13, judged=4, accuracy=1.0),
        done("v4", 15, judged=2, accuracy=0.0),
    ]
    points = learning_curve(rounds, min_judged=8)
    # v1 and v2 together were judged on 8 labels (6 right); v3 alone on 2 (none right) so far.
    assert [(p.n_labels, p.model_version, p.n_judged, p.accuracy) for p in points] == [
        (9, "v2", 8, 0.75),
        (13, "v3", 2, 0.0),
    ]


def test_wilson_interval_known_values() -> None:
    assert wilson_interval(0, 5) == pytest.approx((0.0, 0.4345), abs=1e-4)
    assert wilson_interval(5, 5) == pytest.approx((0.5655, 1.0), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def point(n_labels: int, accuracy: float) -> CurvePoint:
    return CurvePoint(n_labels, f"v{n_labels}", 20, accuracy, 0.0, 1.0)


def test_stop_signal_in_words() -> None:
    assert stop_signal([]) == "No pre-labels judged yet: the first numbers come after the second round."
    assert stop_signal([point(50, 0.7)]) == (
        "Pre-label accuracy is 70% after 50 labels; judging the trend needs 200 labels of history."
    )
    assert stop_signal([point(100, 0.80), point(320, 0.805)]) == (
        "The last 220 labels changed pre-label accuracy by +0.5 points (to 80%): more labels may no longer pay off."
    )
    assert stop_signal([point(100, 0.70), point(200, 0.75), point(300, 0.80)]) == (
        "The last 200 labels raised pre-label accuracy by +10.0 points, to 80%."
    )


def test_the_audit_estimate_pools_the_latest_audits_back_to_its_window() -> None:
    rounds = [
        RoundRecord("done", 0.0, n_audited=30, audit_hits=3),  # an early, weak model: outside the window
        RoundRecord("failed", 0.0, n_audited=99),
        RoundRecord("done", 0.0),
        RoundRecord("done", 0.0, n_audited=20, audit_hits=16),
        RoundRecord("done", 0.0, n_audited=30, audit_hits=27),
    ]
    estimate = audit_estimate(rounds, window=50)
    assert estimate is not None
    assert (estimate.n_judged, estimate.accuracy) == (50, 0.86)
    assert (estimate.low, estimate.high) == pytest.approx(wilson_interval(43, 50))
    assert audit_estimate(rounds[1:3]) is None


def test_a_long_curve_pools_neighbouring_points_and_keeps_every_judged_label() -> None:
    rounds = [done(f"v{i}", i * 10, judged=20, accuracy=(i % 4) / 4) for i in range(MAX_POINTS + 2)]
    points = learning_curve(rounds)
    assert len(points) == MAX_POINTS // 2 + 1  # the 201st closed point halved the curve; one more came after
    assert sum(p.n_judged for p in points) == 20 * (MAX_POINTS + 1)
    assert (points[0].model_version, points[0].n_judged, points[0].accuracy) == (
        "v1",
        40,
        0.375,
    )  # v0 judged 25% right, v1 50%
    assert points[-1].model_version == f"v{MAX_POINTS}"
