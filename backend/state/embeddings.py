"""The embedding cache of one project and encoder: immutable part files under MODEL_DIR."""

from __future__ import annotations

import io
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from backend.state.atomic import atomic_write_bytes
from backend.state.lru import LRUCache

MAX_EMBEDDING_PARTS = 32  # compaction merges parts beyond this, so loading stays one pass over few files
CACHES_KEPT = 8  # projects whose embeddings a process keeps loaded (about 0.5 GB each at 100k tasks)


@dataclass(frozen=True)
class CachedEmbeddings:
    task_ids: np.ndarray  # (N,) int64, sorted, unique
    z: np.ndarray  # (N, D) float32
    sources: np.ndarray  # (N,) str, the image URL each row was computed from

    def rows_of(self, task_ids: np.ndarray) -> np.ndarray:
        """Row index of each task id, -1 where it is not cached."""
        if len(self.task_ids) == 0:
            return np.full(len(task_ids), -1, dtype=np.int64)
        position = np.searchsorted(self.task_ids, task_ids).clip(max=len(self.task_ids) - 1)  # (M,)
        return np.where(self.task_ids[position] == task_ids, position, -1).astype(np.int64)


class EmbeddingCache:
    """Embeddings of one project and encoder, appended as immutable part files.

    Several processes may read while one writes: a part appears by rename, and a
    reader that races a compaction simply lists the folder again.
    """

    _open: ClassVar[LRUCache[Path, EmbeddingCache]] = LRUCache(CACHES_KEPT)

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._parts: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._merged: CachedEmbeddings | None = None
        self._merged_from: tuple[str, ...] = ()
        self._lock = threading.Lock()

    @classmethod
    def at(cls, directory: Path) -> EmbeddingCache:
        """The process's cache object for a folder, so its arrays stay loaded between rounds; the
        CACHES_KEPT most recently used stay loaded (another object on the same folder reads the same parts)."""
        return cls._open.get_or_put(directory, lambda: cls(directory))

    def add(self, task_ids: np.ndarray, z: np.ndarray, sources: list[str]) -> None:
        if len(task_ids) == 0:
            return
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.npz"
        self._write_part(self.directory / name, task_ids, z, np.asarray(sources, dtype=str))

    def load(self) -> CachedEmbeddings:
        for _ in range(5):
            try:
                return self._load_once()
            except FileNotFoundError:
                continue  # a compaction removed a part between listing and reading
        return self._load_once()

    def compact(self) -> None:
        """Merge all parts into one; call only while holding the project's round lock."""
        names = self._part_names()
        if len(names) <= MAX_EMBEDDING_PARTS:
            return
        merged = self.load()
        self._write_part(
            self.directory / f"part-{time.time_ns():020d}-compact.npz", merged.task_ids, merged.z, merged.sources
        )
        for name in names:
            (self.directory / name).unlink(missing_ok=True)

    def _load_once(self) -> CachedEmbeddings:
        with self._lock:
            names = tuple(self._part_names())
            if self._merged is not None and names == self._merged_from:
                return self._merged
            for name in names:
                if name not in self._parts:
                    with np.load(self.directory / name, allow_pickle=False) as part:
                        self._parts[name] = (part["task_ids"], part["z"], part["sources"])
            for name in set(self._parts) - set(names):
                del self._parts[name]
            self._merged = _merge([self._parts[name] for name in names])
            self._merged_from = names
            return self._merged

    def _part_names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir() if p.name.startswith("part-") and p.suffix == ".npz")

    @staticmethod
    def _write_part(path: Path, task_ids: np.ndarray, z: np.ndarray, sources: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.savez(
            buffer, task_ids=np.asarray(task_ids, dtype=np.int64), z=np.asarray(z, dtype=np.float32), sources=sources
        )
        atomic_write_bytes(path, buffer.getvalue())


def _merge(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> CachedEmbeddings:
    """Later parts win for a task embedded twice (its image URL changed)."""
    if not parts:
        return CachedEmbeddings(np.zeros(0, np.int64), np.zeros((0, 0), np.float32), np.zeros(0, dtype=str))
    task_ids = np.concatenate([p[0] for p in parts])  # (M,)
    z = np.concatenate([p[1] for p in parts])  # (M, D)
    sources = np.concatenate([p[2] for p in parts])  # (M,)
    # np.unique keeps the first occurrence, so look at the rows in reverse to keep the last.
    reverse_ids = task_ids[::-1]
    unique_ids, first_in_reverse = np.unique(reverse_ids, return_index=True)
    rows = len(task_ids) - 1 - first_in_reverse
    return CachedEmbeddings(unique_ids, z[rows], sources[rows])
