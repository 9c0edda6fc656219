"""Project files: atomic writes, checked names, round trips of versions and the round history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from backend.errors import BadRequestError
from backend.pipeline.heads import load_head, save_head
from backend.state.atomic import atomic_write_json
from backend.state.files import FileProjectStore
from backend.state.records import RoundRecord


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "..", ""])
def test_version_dir_rejects_names_that_could_leave_the_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(BadRequestError) as raised:
        FileProjectStore(tmp_path, 1).version_dir(name)

    assert str(raised.value) == f"model version {name!r} may only use letters, digits, '.', '_' and '-'"


def test_encoder_key_is_checked_like_a_model_version(tmp_path: Path) -> None:
    with pytest.raises(BadRequestError, match=r"^encoder key 'a/b' may only use"):
        FileProjectStore(tmp_path, 1).embeddings("a/b")


def test_version_dir_lies_under_the_project_folder(tmp_path: Path) -> None:
    assert FileProjectStore(tmp_path, 7).version_dir("v-2.1_b") == tmp_path / "projects" / "7" / "versions" / "v-2.1_b"


def test_queue_round_trip_keeps_values_and_dtypes(tmp_path: Path) -> None:
    store = FileProjectStore(tmp_path, 1)

    store.save_queue("v1", np.array([5, 3], dtype=np.int32), np.array([1, 0]), np.array([0.25, -1.5]))
    queue = store.load_queue("v1")

    assert queue is not None
    assert {key: (value.tolist(), value.dtype) for key, value in queue.items()} == {
        "task_ids": ([5, 3], np.int64),
        "predicted": ([1, 0], np.int64),
        "score": ([0.25, -1.5], np.float32),
    }


def test_load_queue_and_meta_of_an_unknown_version_are_none(tmp_path: Path) -> None:
    store = FileProjectStore(tmp_path, 1)

    assert (store.load_queue("v9"), store.load_meta("v9")) == (None, None)


def test_meta_round_trip(tmp_path: Path) -> None:
    store = FileProjectStore(tmp_path, 1)
    meta = {"labels": ["Cat", "Dog"], "encoder": "resnet18", "n_labeled": 12}

    store.save_meta("v1", meta)

    assert store.load_meta("v1") == meta
    assert store.versions() == ["v1"]


def test_append_round_keeps_the_order(tmp_path: Path) -> None:
    store = FileProjectStore(tmp_path, 1)

    for n in (1, 2, 3):
        store.append_round(RoundRecord("done", float(n)))

    assert [r.finished_at for r in store.rounds()] == [1.0, 2.0, 3.0]
    assert (tmp_path / "projects" / "1" / "rounds.jsonl").read_text().count("\n") == 3


def test_a_history_stored_as_rounds_json_still_loads_and_gets_a_summary(tmp_path: Path) -> None:
    store = FileProjectStore(tmp_path, 1)
    legacy = [{"status": "done", "model_version": "v1", "finished_at": 1.0, "n_predictions": 4, "retired_field": 7}]
    atomic_write_json(tmp_path / "projects" / "1" / "rounds.json", legacy)

    store.append_round(RoundRecord("failed", 2.0, error="Label Studio down"))

    assert [(r.status, r.model_version) for r in store.rounds()] == [("done", "v1"), ("failed", None)]
    summary = store.summary()
    assert (summary.n_rounds, summary.n_done, summary.n_failed, summary.n_predictions) == (2, 1, 1, 4)


def test_head_round_trip_of_a_linear_state_dict(tmp_path: Path) -> None:
    store = FileProjectStore(tmp_path, 1)
    head = nn.Linear(3, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]))
        head.bias.copy_(torch.tensor([0.25, -0.75]))

    meta = {"head": {"kind": "linear", "hidden_dim": 8}, "embedding_dim": 3, "labels": ["a", "b"]}
    save_head(store, "v1", head)
    loaded = load_head(store, "v1", meta)

    assert sorted(loaded.state_dict()) == ["bias", "weight"]
    assert loaded.weight.tolist() == [[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]
    assert loaded.bias.tolist() == [0.25, -0.75]
