"""The stream report's figures on a tiny set of runs whose answers are worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.stream_report import (
    check_targets,
    format_audit,
    format_events,
    format_per_seed,
    format_protocol,
    group_runs,
    main,
    summarise,
)


def _run(protocol: str, policy: str, seed: int, accuracy: list[float], **extra: Any) -> dict[str, Any]:
    run = {"dataset": "toy", "protocol": protocol, "policy": policy, "seed": seed, "n_labels": [0, 200]}
    return run | {"accuracy": accuracy, "served_first": 0, "served": 0, "batch_events": {}} | {
        "audit_hits": 0, "audit_judged": 0, "pool_accuracy": [], "seconds": 1.0, **extra
    }  # fmt: skip


def _runs() -> list[dict[str, Any]]:
    """Per-run means (%): live alfamix 60 and 70, random 50 and 60, entropy 66, margin 60; batch alfamix 64.5,
    team3 62, live_audit5 63 and 65. Listed out of order on purpose."""
    flat = {"entropy": 0.66, "margin": 0.60}
    return [
        _run("team3", "alfamix", 0, [0.62, 0.62]),
        _run("live", "alfamix", 1, [0.6, 0.8], served_first=200, served=200, batch_events={"new": 1, "kept": 10}),
        _run("live", "alfamix", 0, [0.5, 0.7], served_first=150, served=200,
             batch_events={"new": 1, "kept": 8, "stale": 2}),
        _run("live", "random", 0, [0.5, 0.5]),
        _run("live", "random", 1, [0.6, 0.6]),
        *(_run("live", policy, seed, [value, value]) for policy, value in flat.items() for seed in (0, 1)),
        *(_run("batch", "alfamix", seed, [0.645, 0.645]) for seed in (0, 1)),
        _run("live_audit5", "alfamix", 0, [0.63, 0.63], audit_hits=3, audit_judged=4, pool_accuracy=[0.5, 0.7]),
        _run("live_audit5", "alfamix", 1, [0.65, 0.65], audit_hits=1, audit_judged=4, pool_accuracy=[0.6]),
    ]  # fmt: skip


def test_groups_follow_protocol_and_policy_order_with_seeds_ascending() -> None:
    groups = group_runs(_runs())
    assert list(groups)[:4] == [
        ("toy", "live", "alfamix"),
        ("toy", "live", "random"),
        ("toy", "live", "entropy"),
        ("toy", "live", "margin"),
    ]
    assert list(groups)[4:] == [
        ("toy", "team3", "alfamix"),
        ("toy", "live_audit5", "alfamix"),
        ("toy", "batch", "alfamix"),
    ]
    assert [run["seed"] for run in groups[("toy", "live", "alfamix")]] == [0, 1]


def test_summary_of_live_alfamix_is_the_mean_over_seeds_of_run_means() -> None:
    summary = summarise(_runs())[("toy", "live", "alfamix")]
    assert summary.mean == pytest.approx(65.0)
    assert summary.std == pytest.approx(50**0.5)  # ddof=1 over 60 and 70
    assert summary.vs_random == pytest.approx(10.0)
    assert summary.final == pytest.approx(75.0)
    assert summary.served_first == pytest.approx(87.5)  # 350 of 400
    assert summary.n_seeds == 2


def test_live_table_rounds_to_one_decimal() -> None:
    lines = format_protocol(summarise(_runs()), "live", served=True).splitlines()
    assert lines[2] == "| toy | alfamix | 65.0 | 7.1 | +10.0 | 75.0 | 87.5 | 2 |"
    assert lines[3] == "| toy | random | 55.0 | 7.1 | +0.0 | 55.0 | – | 2 |"  # served nothing: no share
    assert len(lines) == 6  # header, alignment, four policies: no batch or team3 rows


def test_targets_name_the_rival_it_is_not_above_and_each_verdict() -> None:
    assert check_targets(summarise(_runs()), _runs()) == [
        "- toy: (a) met: alfamix +10.0 points vs random (target >= +3.0); (b) missed: not above entropy (-1.0); "
        "(c) met: live − batch +0.5 points (target within 1.0); "
        "(d) missed: team3 − live +2.0 points (target within 1.0)"  # paired: seed 0 only, 62 − 60
    ]


def test_targets_judge_the_rounded_figure_and_say_na_without_runs() -> None:
    runs = [
        _run("live", "alfamix", 0, [0.6296, 0.6296]),
        _run("live", "random", 0, [0.6, 0.6]),
        _run("live", "margin", 0, [0.62, 0.62]),
    ]
    assert check_targets(summarise(runs), runs) == [
        "- toy: (a) met: alfamix +3.0 points vs random (target >= +3.0); (b) met: above margin (+1.0); (c) n/a; (d) n/a"
    ]


def test_per_seed_audit_and_events_tables() -> None:
    runs = _runs()
    assert "| toy | live | alfamix | 60.0 | 70.0 |" in format_per_seed(runs).splitlines()
    # 4 of 8 audit tasks right; the pool accuracy is the mean of 50, 70, 60; audit5 64 vs live 65
    assert format_audit(runs, summarise(runs)).splitlines()[2] == "| toy | 8 | 50.0 | 60.0 | -10.0 | -1.0 |"
    assert format_events(runs).splitlines()[2] == "| toy | 1.0 | 9.0 | 1.0 |"


def test_cli_writes_markdown_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "stream_toy.json"
    path.write_text(json.dumps({"runs": _runs()}))
    main(["--json", str(path), "--out", str(tmp_path / "docs")])
    markdown = (tmp_path / "docs" / "al_stream.md").read_text()
    assert markdown.startswith("# Active learning on a live stream of labels")
    assert f"`python -m bench.stream_report --json {path} --out {tmp_path / 'docs'}`" in markdown
    assert "| toy | 65.0 | – | 62.0 | 64.0 | 64.5 | – | +2.0 | -1.0 | +0.5 |" in markdown
    assert (tmp_path / "docs" / "al_stream.png").stat().st_size > 0
    assert "## Targets" in capsys.readouterr().out


def test_a_tiny_negative_difference_prints_as_plus_zero() -> None:
    runs = [_run("live", "alfamix", 0, [0.6, 0.6]), _run("live", "margin", 0, [0.6004, 0.6004])]
    assert check_targets(summarise(runs), runs) == [
        "- toy: (a) n/a; (b) missed: not above margin (+0.0); (c) n/a; (d) n/a"
    ]
