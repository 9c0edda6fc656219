"""model/ must not know about the service: no backend, web framework, Redis, RQ or Label Studio SDK."""

from __future__ import annotations

import ast
from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parents[2] / "model"
FORBIDDEN = {
    "backend",
    "fastapi",
    "starlette",
    "flask",
    "uvicorn",
    "werkzeug",
    "redis",
    "rq",
    "label_studio_sdk",
    "label_studio",
    "label_studio_ml",
    "requests",
    "httpx",
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_model_imports_nothing_from_the_service_layer() -> None:
    files = sorted(MODEL_DIR.rglob("*.py"))
    assert len(files) >= 10
    offending = {str(path.relative_to(MODEL_DIR)): sorted(imported_roots(path) & FORBIDDEN) for path in files}
    assert {name: roots for name, roots in offending.items() if roots} == {}


def test_the_check_sees_a_forbidden_import(tmp_path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import redis.client\nfrom backend.jobs.runner import run\nfrom . import sibling\n")
    assert imported_roots(sample) == {"redis", "backend"}
