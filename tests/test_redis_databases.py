"""The table of Redis databases: one per test module, never 0, none shared with a benchmark."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.redis_databases import DATABASE_OF_MODULE, N_DATABASES

ROOT = Path(__file__).resolve().parents[1]


def benchmark_databases() -> dict[str, int]:
    """{bench file name: the database its module-level ``REDIS_DB`` names}, read without importing it."""
    found = {}
    for path in sorted((ROOT / "bench").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(target, ast.Name) and target.id == "REDIS_DB" for target in node.targets)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, int)
            ):
                found[path.name] = node.value.value
    return found


def test_every_module_has_a_database_of_its_own_and_none_uses_0() -> None:
    databases = sorted(DATABASE_OF_MODULE.values())
    assert len(set(databases)) == len(databases), f"shared databases: {databases}"
    assert all(1 <= database < N_DATABASES for database in databases), databases


def test_every_module_in_the_table_exists() -> None:
    missing = [module for module in DATABASE_OF_MODULE if not (ROOT / f"{module.replace('.', '/')}.py").is_file()]
    assert missing == []


def test_no_test_module_shares_a_database_with_a_benchmark() -> None:
    benches = benchmark_databases()
    assert "bench_backend.py" in benches  # the reader finds the constants at all
    assert len(set(benches.values())) == len(benches), benches
    shared = {name: database for name, database in benches.items() if database in DATABASE_OF_MODULE.values()}
    assert shared == {}
    assert 0 not in benches.values()
