"""Every benchmark module imports: a rename in backend/ or model/ must not leave one broken
until somebody runs it (bench_scale imported a class that no longer existed)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
MODULES = sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "__init__")


def test_the_benchmarks_are_all_listed() -> None:
    assert {"bench_scale", "bench_training", "stream_simulation", "training_report"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_a_benchmark_module_imports(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    assert module.__name__ == f"bench.{name}"
