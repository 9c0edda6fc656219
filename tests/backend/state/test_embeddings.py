"""The embedding cache: parts appended, merged (later parts win), compacted, shared between readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.state.embeddings import MAX_EMBEDDING_PARTS, EmbeddingCache


def part_files(cache: EmbeddingCache) -> list[str]:
    return sorted(path.name for path in cache.directory.iterdir())


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
