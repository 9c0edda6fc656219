"""The history summary: folded one record at a time, it gives what folding the whole history gives."""

from __future__ import annotations

import json
import random

from backend.state.learning_curve import audit_estimate, learning_curve
from backend.state.records import RoundRecord
from backend.state.summary import RECENT_ROUNDS, HistorySummary


def history(n: int, seed: int = 0) -> list[RoundRecord]:
    """Done rounds with pre-label judgements and audits, some failed, some with nothing to rank."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        if rng.random() < 0.1:
            records.append(RoundRecord("failed", float(i), error="Label Studio down"))
            continue
        judged = rng.randint(0, 6)
        records.append(
            RoundRecord(
                "done",
                float(i),
                model_version=f"alfamix-{i}-20260101000000" if rng.random() < 0.95 else None,
                n_labeled_tasks=i * 3,
                n_prelabeled=judged,
                prelabel_accuracy=rng.randint(0, judged) / judged if judged else None,
                n_audited=(audited := rng.randint(0, 2)),
                audit_hits=rng.randint(0, audited),
                n_predictions=40,
                read_seconds=rng.choice([0.05, 0.7, 3.0, 400.0]),
            )
        )
    return records


def test_the_summary_agrees_with_the_whole_history_at_every_length() -> None:
    records = history(300)
    summary = HistorySummary()
    for n, record in enumerate(records, start=1):
        summary.add(record)
        if n % 37 == 0 or n == len(records):
            assert summary.points() == learning_curve(records[:n])
            assert summary.audit.estimate() == audit_estimate(records[:n])
    done = [r for r in records if r.done]
    assert (summary.n_rounds, summary.n_done, summary.n_failed) == (300, len(done), 300 - len(done))
    assert summary.n_predictions == 40 * len(done)
    assert summary.last_done == done[-1]
    reads = summary.stage_seconds["read"]
    assert reads.counts[0] == sum(r.read_seconds == 0.05 for r in done)  # <= 0.1 s
    assert reads.counts[-1] == sum(r.read_seconds == 400.0 for r in done)  # beyond the last bucket: +Inf


def test_the_summary_keeps_a_bounded_slice_of_the_history() -> None:
    summary = HistorySummary.of(history(300))
    assert len(summary.recent) == RECENT_ROUNDS
    assert [r.finished_at for r in summary.recent] == [float(i) for i in range(300 - RECENT_ROUNDS, 300)]
    assert len(summary.audit.rounds) <= summary.audit.window  # at least one audit task per kept round


def test_the_summary_survives_json() -> None:
    summary = HistorySummary.of(history(120, seed=3))
    again = HistorySummary.from_dict(json.loads(json.dumps(summary.to_dict())))
    assert again == summary
    record = RoundRecord("done", 1.0, model_version="v9", n_prelabeled=5, prelabel_accuracy=0.4)
    summary.add(record)
    again.add(record)
    assert again == summary


def test_a_record_with_unknown_fields_loads_and_missing_ones_default() -> None:
    record = RoundRecord.from_dict({"status": "done", "finished_at": 2.0, "field_of_a_newer_version": 1})
    assert record == RoundRecord("done", 2.0)
    assert record.seconds("read") is None and record.skipped_tasks == {}
