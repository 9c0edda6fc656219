"""The package tree is the architecture: which layer may import which is checked here, not kept by habit.

    settings, errors  <-  state  <-  labelstudio  <-  pipeline (+ model/, torch)  <-  jobs  <-  ml_backend  <-  http

The web process (http/) never imports the pipeline or torch; jobs/ never imports torch or model/
itself: it reaches the pipeline through the registry's dotted names, in the modules that run jobs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BACKEND = Path(__file__).resolve().parents[2] / "backend"
TRAINING_STACK = {"torch", "torchvision", "model", "backend.pipeline"}
# Imports each sub-package must not make (a name forbids the module and everything under it).
FORBIDDEN = {
    "state": {"backend.labelstudio", "backend.pipeline", "backend.jobs", "backend.http", "backend.ml_backend", "torch"},
    "labelstudio": {"backend.pipeline", "backend.jobs", "backend.http", "backend.ml_backend", "torch", "model"},
    "pipeline": {"backend.jobs", "backend.http", "backend.ml_backend"},
    "jobs": {"backend.http", "backend.ml_backend", "torch", "model"},
    "http": TRAINING_STACK | {"backend.jobs.runner"},
}


# The worker process's entry point runs the pipeline: it settles the device before the first job.
PROCESS_ENTRIES = {BACKEND / "jobs" / "worker.py"}


def imported_modules(path: Path, top_level_only: bool = False) -> set[str]:
    """Absolute imports of a file; with top_level_only, those outside functions (run on import)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def violations(imported: set[str], forbidden: set[str]) -> list[str]:
    return sorted(name for name in imported for bad in forbidden if name == bad or name.startswith(bad + "."))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_imports_only_from_the_layers_below(package: str) -> None:
    files = sorted(p for p in (BACKEND / package).rglob("*.py") if p not in PROCESS_ENTRIES)
    assert files, package
    found = {str(p.relative_to(BACKEND)): violations(imported_modules(p), FORBIDDEN[package]) for p in files}
    assert {name: bad for name, bad in found.items() if bad} == {}


def test_the_backend_class_loads_the_pipeline_only_when_it_first_predicts() -> None:
    on_import = imported_modules(BACKEND / "ml_backend.py", top_level_only=True)
    assert violations(on_import, TRAINING_STACK) == []
    assert "backend.pipeline.predictor" in imported_modules(BACKEND / "ml_backend.py")


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import torch.nn\nfrom backend.pipeline import rounds\nfrom . import sibling\n")
    assert violations(imported_modules(sample), FORBIDDEN["http"]) == [
        "backend.pipeline",
        "backend.pipeline.rounds",
        "torch.nn",
    ]
