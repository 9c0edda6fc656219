"""Atomic JSON files: a reader sees the old file or the new one, never a torn write or a temporary."""

from __future__ import annotations

from pathlib import Path

from backend.state.atomic import atomic_write_json, read_json


def test_atomic_write_json_leaves_only_the_target_file(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "live.json"

    atomic_write_json(path, {"model_version": "v1"})
    atomic_write_json(path, {"model_version": "v2"})

    assert sorted(p.name for p in path.parent.iterdir()) == ["live.json"]
    assert read_json(path) == {"model_version": "v2"}


def test_read_json_returns_the_default_for_a_missing_file(tmp_path: Path) -> None:
    assert read_json(tmp_path / "absent.json", []) == []
