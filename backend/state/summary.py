"""A project's round history folded into the figures status and /metrics show.

The store updates the summary as it appends each record, so a status refresh or a
/metrics scrape reads one small object whatever the length of the history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from backend.state.learning_curve import AuditWindow, CurveBuilder, CurvePoint
from backend.state.records import TIMED_PARTS, RoundRecord

STAGE_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)  # seconds, upper bounds
RECENT_ROUNDS = 50  # records the status shows; the full history stays in the store


@dataclass
class TimeHistogram:
    """Observations per bucket (not cumulative), their sum and count: constant size."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(STAGE_BUCKETS) + 1))  # the last is +Inf
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[next((i for i, bound in enumerate(STAGE_BUCKETS) if seconds <= bound), len(STAGE_BUCKETS))] += 1
        self.total += seconds


@dataclass
class HistorySummary:
    n_rounds: int = 0  # records appended, done and failed; versions are numbered from it
    n_done: int = 0
    n_failed: int = 0
    n_predictions: int = 0  # written to Label Studio, over all rounds
    n_embedded: int = 0  # embedded by rounds (embed jobs are not rounds)
    stage_seconds: dict[str, TimeHistogram] = field(default_factory=lambda: {p: TimeHistogram() for p in TIMED_PARTS})
    curve: CurveBuilder = field(default_factory=CurveBuilder)
    audit: AuditWindow = field(default_factory=AuditWindow)
    last_done: RoundRecord | None = None
    recent: list[RoundRecord] = field(default_factory=list)  # the latest RECENT_ROUNDS, oldest first

    def add(self, record: RoundRecord) -> None:
        self.n_rounds += 1
        self.recent = [*self.recent[-(RECENT_ROUNDS - 1) :], record]
        if not record.done:
            self.n_failed += 1
            return
        self.n_done += 1
        self.last_done = record
        self.n_predictions += record.n_predictions
        self.n_embedded += record.n_embedded
        for part, histogram in self.stage_seconds.items():
            if (seconds := record.seconds(part)) is not None:
                histogram.observe(seconds)
        self.curve.add(record)
        self.audit.add(record)

    def points(self) -> list[CurvePoint]:
        return self.curve.points()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> HistorySummary:
        curve = raw["curve"]
        return cls(
            n_rounds=raw["n_rounds"],
            n_done=raw["n_done"],
            n_failed=raw["n_failed"],
            n_predictions=raw["n_predictions"],
            n_embedded=raw["n_embedded"],
            stage_seconds={part: TimeHistogram(**h) for part, h in raw["stage_seconds"].items()},
            curve=CurveBuilder(
                min_judged=curve["min_judged"],
                closed=[CurvePoint(**p) for p in curve["closed"]],
                previous=tuple(curve["previous"]) if curve["previous"] else None,
                last_judged=tuple(curve["last_judged"]) if curve["last_judged"] else None,
                hits=curve["hits"],
                judged=curve["judged"],
            ),
            audit=AuditWindow(raw["audit"]["window"], [tuple(r) for r in raw["audit"]["rounds"]]),
            last_done=RoundRecord.from_dict(raw["last_done"]) if raw["last_done"] else None,
            recent=[RoundRecord.from_dict(r) for r in raw["recent"]],
        )

    @classmethod
    def of(cls, records: Iterable[RoundRecord]) -> HistorySummary:
        """The summary of a whole history: for a history stored before summaries were kept."""
        summary = cls()
        for record in records:
            summary.add(record)
        return summary
