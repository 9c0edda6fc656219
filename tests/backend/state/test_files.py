"""Project files: atomic writes, the embedding cache's merge rules, checked names, round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from backend.errors import BadRequestError
from backend.state.files import MAX_EMBEDDING_PARTS, EmbeddingCache, ProjectStore, atomic_write_json, read_json


def part_files(cache: EmbeddingCache) -> list[str]:
    return sorted(path.name for path in cache.directory.iterdir())


def test_atomic_write_json_leaves_only_the_target_file(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "live.json"

    atomic_write_json(path, {"model_version": "v1"})
    atomic_write_json(path, {"model_version": "v2"})

    assert sorted(p.name for p in path.parent.iterdir()) == ["live.json"]
    assert read_json(path) == {"model_version": "v2"}


def test_read_json_returns_the_default_for_a_missing_file(tmp_path: Path) -> None:
    assert read_json(tmp_path / "absent.json", []) == []


def test_embedding_cache_round_trip_sorts_rows_by_task_id(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "emb")

    cache.add(np.array([30, 10]), np.array([[3.0, 3.5], [1.0, 1.5]]), ["u30", "u10"])
    loaded = cache.load()

    np.testing.assert_array_equal(loaded.task_ids, np.array([10, 30], dtype=np.int64))
    np.testing.assert_array_equal(loaded.z, np.array([[1.0, 1.5], [3.0, 3.5]], dtype=np.float32))
    assert loaded.sources.tolist() == ["u10", "u30"]
    assert (loaded.task_ids.dtype, loaded.z.dtype) == (np.int64, np.float32)


def test_task_embedded_twice_keeps_the_last_part_row(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "emb")

    cache.add(np.array([1, 2]), np.array([[1.0], [2.0]]), ["a1", "a2"])
    cache.add(np.array([2, 3]), np.array([[20.0], [30.0]]), ["b2", "b3"])
    loaded = cache.load()

    assert loaded.task_ids.tolist() == [1, 2, 3]
    assert loaded.z[:, 0].tolist() == [1.0, 20.0, 30.0]
    assert loaded.sources.tolist() == ["a1", "b2", "b3"]


def test_empty_add_writes_no_part(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "emb")

    cache.add(np.array([], dtype=np.int64), np.zeros((0, 4)), [])

    assert not cache.directory.exists()
    assert cache.load().task_ids.tolist() == []


def test_rows_of_gives_row_indices_and_minus_one_for_unknown_ids(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "emb")
    cache.add(np.array([9, 2, 5]), np.zeros((3, 2)), ["u9", "u2", "u5"])

    rows = cache.load().rows_of(np.array([9, 4, 2, 10, 0, 5]))

    assert rows.tolist() == [2, -1, 0, -1, -1, 1]
    assert rows.dtype == np.int64


def test_rows_of_on_an_empty_cache_is_all_minus_one(tmp_path: Path) -> None:
    rows = EmbeddingCache(tmp_path / "emb").load().rows_of(np.array([1, 2]))

    assert rows.tolist() == [-1, -1]


def add_parts(cache: EmbeddingCache, first: int, count: int) -> None:
    # Part k embeds tasks k and k + 1, so every task but the first is embedded twice and the later part wins.
    for k in range(first, first + count):
        cache.add(np.array([k, k + 1]), np.array([[k, 0.0], [k, 1.0]]), [f"p{k}-t{k}", f"p{k}-t{k + 1}"])


def test_compact_does_nothing_at_max_parts(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "emb")
    add_parts(cache, 0, MAX_EMBEDDING_PARTS)
    before = part_files(cache)

    cache.compact()

    assert len(before) == MAX_EMBEDDING_PARTS
    assert part_files(cache) == before


def test_compact_merges_to_one_part_above_max_parts_with_identical_content(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "emb")
    add_parts(cache, 0, MAX_EMBEDDING_PARTS + 1)
    before = cache.load()

    cache.compact()
    after = EmbeddingCache(cache.directory).load()

    assert len(part_files(cache)) == 1
    np.testing.assert_array_equal(after.task_ids, before.task_ids)
    np.testing.assert_array_equal(after.z, before.z)
    np.testing.assert_array_equal(after.sources, before.sources)
    # Task 5 is in parts 4 and 5; part 5 wrote it last, as its first row.
    assert (after.z[5].tolist(), after.sources[5]) == ([5.0, 0.0], "p5-t5")


def test_part_added_after_compaction_still_wins(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "emb")
    add_parts(cache, 0, MAX_EMBEDDING_PARTS + 1)
    cache.compact()

    cache.add(np.array([3]), np.array([[-1.0, -1.0]]), ["new"])
    loaded = cache.load()

    assert (loaded.z[3].tolist(), loaded.sources[3]) == ([-1.0, -1.0], "new")


def test_second_cache_on_the_same_folder_sees_parts_written_by_the_first(tmp_path: Path) -> None:
    writer = EmbeddingCache(tmp_path / "emb")
    reader = EmbeddingCache(tmp_path / "emb")
    writer.add(np.array([1]), np.array([[1.0]]), ["u1"])
    assert reader.load().task_ids.tolist() == [1]

    writer.add(np.array([2]), np.array([[2.0]]), ["u2"])

    assert reader.load().task_ids.tolist() == [1, 2]


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "..", ""])
def test_version_dir_rejects_names_that_could_leave_the_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(BadRequestError) as raised:
        ProjectStore(tmp_path, 1).version_dir(name)

    assert str(raised.value) == f"model version {name!r} may only use letters, digits, '.', '_' and '-'"


def test_encoder_key_is_checked_like_a_model_version(tmp_path: Path) -> None:
    with pytest.raises(BadRequestError, match=r"^encoder key 'a/b' may only use"):
        ProjectStore(tmp_path, 1).embeddings("a/b")


def test_version_dir_lies_under_the_project_folder(tmp_path: Path) -> None:
    assert ProjectStore(tmp_path, 7).version_dir("v-2.1_b") == tmp_path / "projects" / "7" / "versions" / "v-2.1_b"


def test_queue_round_trip_keeps_values_and_dtypes(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path, 1)

    store.save_queue("v1", np.array([5, 3], dtype=np.int32), np.array([1, 0]), np.array([0.25, -1.5]))
    queue = store.load_queue("v1")

    assert queue is not None
    assert {key: (value.tolist(), value.dtype) for key, value in queue.items()} == {
        "task_ids": ([5, 3], np.int64),
        "predicted": ([1, 0], np.int64),
        "score": ([0.25, -1.5], np.float32),
    }


def test_load_queue_and_meta_of_an_unknown_version_are_none(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path, 1)

    assert (store.load_queue("v9"), store.load_meta("v9")) == (None, None)


def test_meta_round_trip(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path, 1)
    meta = {"labels": ["Cat", "Dog"], "encoder": "resnet18", "n_labeled": 12}

    store.save_meta("v1", meta)

    assert store.load_meta("v1") == meta
    assert store.versions() == ["v1"]


def test_append_round_keeps_the_order(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path, 1)

    for n in (1, 2, 3):
        store.append_round({"round": n})

    assert store.rounds() == [{"round": 1}, {"round": 2}, {"round": 3}]


def test_head_round_trip_of_a_linear_state_dict(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path, 1)
    head = nn.Linear(3, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]))
        head.bias.copy_(torch.tensor([0.25, -0.75]))

    store.save_head("v1", head.state_dict())
    loaded = store.load_head("v1")

    assert sorted(loaded) == ["bias", "weight"]
    assert loaded["weight"].tolist() == [[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]
    assert loaded["bias"].tolist() == [0.25, -0.75]
