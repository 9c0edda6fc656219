"""The training-mode comparison: a short live run per mode, and the report's figures worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.datasets import load_digits_pixels
from bench.stream_report import load_runs as load_head_runs
from bench.stream_simulation import Protocol, run_live
from bench.training_report import format_table, load_runs


def test_a_short_live_run_trains_the_projection_it_is_asked_for() -> None:
    data = load_digits_pixels()
    protocol = Protocol("live", n_labels=10, eval_every=5)

    run = run_live(data, "alfamix", protocol, seed=0, training="projection")

    assert (run.training, run.head_epochs, run.n_labels) == ("projection", 100, [0, 5, 10])
    assert run.served == 10 and run.accuracy[0] == float((data.y_test == 0).mean())
    assert run.accuracy[-1] > 0.5  # ten labels of ten digit classes, chosen by ALFA-Mix


def _run(training: str, seed: int, accuracy: list[float], **extra: Any) -> dict[str, Any]:
    return {
        "dataset": "toy", "protocol": "live", "policy": "alfamix", "seed": seed, "training": training,
        "accuracy": accuracy, "seconds": 10.0 * (seed + 1), **extra,
    }  # fmt: skip


def test_the_table_pairs_each_mode_with_head_only_on_the_same_seeds(tmp_path: Path) -> None:
    old = [_run("head", 0, [0.5, 0.7]), _run("head", 1, [0.6, 0.8])]  # written before head_epochs existed
    new = [
        _run("projection", 0, [0.6, 0.8], head_epochs=100, batch_events={"new": 3, "stale": 2, "kept": 9}),
        _run("projection", 1, [0.6, 1.0], head_epochs=100),
        _run("projection", 2, [0.0, 0.0], head_epochs=100),  # no head-only run to pair with
        _run("head", 0, [0.5, 0.7], protocol="batch"),  # another protocol: left out
    ]
    (tmp_path / "a.json").write_text(json.dumps({"runs": old}))
    (tmp_path / "b.json").write_text(json.dumps({"runs": new}))

    lines = format_table(load_runs([tmp_path / "a.json", tmp_path / "b.json"])).splitlines()

    # head: means 60 and 70 -> 65.0, finals 70 and 80 -> 75.0; projection: means 70, 80, 0 -> 50.0,
    # finals 80, 100, 0 -> 60.0, paired with seeds 0 and 1: +10 and +10.
    assert lines[2:] == [
        "| toy | alfamix | head | 300 | 2 | 65.0 | 75.0 |  | 0.0 | 15 |",
        "| toy | alfamix | projection | 100 | 3 | 50.0 | 60.0 | +10.0 | 1.7 | 20 |",
    ]
    # The queue-policy report reads head-only runs alone.
    assert [run["training"] for run in load_head_runs([tmp_path / "b.json"])] == ["head"]
