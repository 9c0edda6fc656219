"""No package imports ``tests``: what the benchmarks and the demo share with the tests lives in ``devtools/``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("backend", "model", "bench", "demo", "devtools")


def imports_of_tests(path: Path) -> list[str]:
    """The absolute imports in the file whose first component is ``tests``, as ``"line N: module"``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        found += [f"line {node.lineno}: {module}" for module in modules if module.split(".")[0] == "tests"]
    return found


def test_no_package_imports_tests() -> None:
    assert all((ROOT / package).is_dir() for package in PACKAGES)
    offenders = {
        str(path.relative_to(ROOT)): found
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if (found := imports_of_tests(path))
    }
    assert offenders == {}


def test_the_check_finds_an_import_from_tests(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import testsuite\nfrom . import tests\nfrom tests.e2e.project import X\nimport tests.e2e\n")
    assert imports_of_tests(sample) == ["line 3: tests.e2e.project", "line 4: tests.e2e"]
