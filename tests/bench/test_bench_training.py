"""The round-cost benchmark per training mode, run small so that it stays runnable."""

from __future__ import annotations

import pytest

from bench.bench_training import main, measure


def test_every_mode_is_timed_for_training_and_for_the_queue() -> None:
    figures = measure(n_unl=60, n_lab=20, dim=16, repeats=1)
    assert sorted(figures) == ["head", "projection"]
    assert all(train > 0 and queue > 0 for train, queue in figures.values())


def test_the_table_has_a_row_per_pool_labels_and_mode(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--sizes", "40", "60", "--labels", "20", "--dim", "16", "--repeats", "1"])
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [row.split(" | ")[:3] for row in rows] == [
        ["| 40", "20", "head"], ["| 40", "20", "projection"], ["| 60", "20", "head"], ["| 60", "20", "projection"]
    ]  # fmt: skip
    assert all(row.endswith(" |") for row in rows) and rows[0].endswith("| 1.00 |")
