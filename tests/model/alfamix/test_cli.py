"""``python -m model.alfamix score`` run as a user would, in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.synthetic import make_query_inputs
from model.alfamix.cli import main

ROOT = Path(__file__).resolve().parents[3]
OUTPUT_KEYS = {
    "candidates": (np.bool_, "N"),
    "selected": (np.int64, "n"),
    "order": (np.int64, "N"),
    "score": (np.float32, "N"),
    "cluster": (np.int64, "N"),
    "first_flip_cap": (np.float32, "N"),
    "min_alpha_norm": (np.float32, "N"),
    "flip_count": (np.int64, "N"),
}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "model.alfamix", "score", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    return make_query_inputs(500, dim=32, n_classes=4, n_lab=40, random_state=0)


def write(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def test_scores_a_pool_and_writes_every_output(tmp_path, inputs) -> None:
    source = write(tmp_path / "in.npz", inputs)
    completed = run_cli("--input", str(source), "--output", str(tmp_path / "out.npz"), "--n-query", "20", "--timing")
    assert completed.returncode == 0, completed.stderr
    timing = json.loads(completed.stderr.strip().splitlines()[-1])
    stages = {"candidate_search_seconds", "selection_seconds", "ordering_seconds"}
    assert set(timing) == stages | {"query_seconds"}
    assert timing["query_seconds"] == pytest.approx(sum(timing[s] for s in stages), abs=1e-5)
    with np.load(tmp_path / "out.npz") as out:
        for key, (dtype, length) in OUTPUT_KEYS.items():
            assert out[key].dtype == dtype, key
            assert out[key].shape == ((500,) if length == "N" else (20,)), key
        assert sorted(out["order"].tolist()) == list(range(500))
        assert out["order"][:20].tolist() == out["selected"].tolist()


def test_learned_mode_and_seed_are_accepted(tmp_path, inputs) -> None:
    source = write(tmp_path / "in.npz", inputs)
    outputs = []
    for name in ("a", "b"):
        target = tmp_path / f"{name}.npz"
        completed = run_cli("--input", str(source), "--output", str(target), "--mode", "learned", "--seed", "5")
        assert completed.returncode == 0, completed.stderr
        with np.load(target) as out:
            outputs.append(out["order"])
    assert np.array_equal(*outputs)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a: a.pop("head_b"), "lacks head_b"),
        (lambda a: a.update(ulb_emb=a["ulb_emb"][:, :5]), "head_w shape (4, 32) should be (K, D) with D=5"),
        (lambda a: a["ulb_emb"].__setitem__((0, 0), np.nan), "ulb_emb contains NaN or inf"),
        (lambda a: a["lb_y"].__setitem__(0, 9), "y_lab values span [0, 9], outside [0, 3]"),
        (lambda a: a.update(lb_y=a["lb_y"].astype(np.float32)), "lb_y has dtype float32, expected integers"),
        (lambda a: a.update(lb_emb=a["lb_emb"][:, :3]), "z_lab shape (40, 3) should be (L, D) with D=32"),
    ],
)
def test_malformed_input_exits_2_with_one_line(tmp_path, capsys, inputs, edit, message) -> None:
    arrays = {key: value.copy() for key, value in inputs.items()}
    edit(arrays)
    status = main(["score", "--input", str(write(tmp_path / "in.npz", arrays)), "--output", str(tmp_path / "o.npz")])
    assert status == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "o.npz").exists()


def test_non_positive_n_query_and_unreadable_file_exit_2(tmp_path, inputs) -> None:
    source = write(tmp_path / "in.npz", inputs)
    completed = run_cli("--input", str(source), "--output", str(tmp_path / "o.npz"), "--n-query", "0")
    assert completed.returncode == 2 and completed.stderr.strip() == "error: n_query=0 should be >= 1"
    (tmp_path / "bad.npz").write_text("not an archive")
    assert main(["score", "--input", str(tmp_path / "bad.npz"), "--output", str(tmp_path / "o.npz")]) == 2
