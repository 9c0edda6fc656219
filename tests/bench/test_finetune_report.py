"""The fine-tuning report: figures worked out by hand from runs as bench.finetune_simulation writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.finetune_report import format_table, main


def _run(training: str, seed: int, accuracy: list[float], **extra: Any) -> dict[str, Any]:
    config = {"n_blocks": 1, "epochs": 10, "batch_size": 32, "learning_rate": 1e-4} if training == "finetune" else {}
    return {
        "dataset": "toy", "size": 112, "n_pool": 60, "policy": "random", "training": training, "seed": seed,
        "every": 50 if config else 0, "config": config, "accuracy": accuracy, "finetune_seconds": [],
        "embed_seconds": [], **extra,
    }  # fmt: skip


def test_the_table_pairs_finetune_with_head_by_seed() -> None:
    runs = [
        _run("head", 0, [0.5, 0.7]),
        _run("head", 1, [0.6, 0.8]),
        _run("projection", 0, [0.5, 0.9]),
        _run("finetune", 0, [0.5, 0.8], finetune_seconds=[1.0, 3.0], embed_seconds=[0.5]),
        _run("finetune", 1, [0.6, 1.0], finetune_seconds=[2.0]),
        _run("finetune", 2, [0.0, 0.0]),  # no head-only run to pair with
    ]

    lines = format_table(runs).splitlines()

    # head: means 60, 70 -> 65.0, finals 70, 80 -> 75.0; projection: 70.0; finetune: means 65, 80, 0 -> 48.3,
    # finals 80, 100, 0 -> 60.0; paired with seeds 0 and 1: +5 and +10; fine-tunes 1, 3, 2 s -> median 2.
    assert lines[2:] == [
        "| toy | 112 | random | every 50, 1 block(s), 10 epochs, batch 32, lr 0.0001 | 3 | 65.0 | 70.0 | 48.3 "
        "| +7.5 (+5.0..+10.0) | 75.0, 60.0 | 2.0 | 0.5 |"
    ]


def test_the_command_line_reads_every_file_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"runs": [_run("head", 0, [0.5, 0.7])]}))
    (tmp_path / "b.json").write_text(json.dumps({"runs": [_run("finetune", 0, [0.6, 0.8])]}))

    main(["--json", str(tmp_path / "a.json"), str(tmp_path / "b.json")])

    row = capsys.readouterr().out.splitlines()[2]
    assert row.startswith("| toy | 112 | random | every 50, ") and "| 60.0 | - | 70.0 | +10.0 (+10.0..+10.0) |" in row
