"""Per-project state under MODEL_DIR, every file written atomically (write, fsync, rename).

Layout of ``MODEL_DIR/projects/<project_id>/``:
    embeddings/<encoder_key>/part-*.npz   cached embeddings, appended in parts
    versions/<model_version>/head.pt      head state_dict (loaded with weights_only=True)
    versions/<model_version>/meta.json    labels, encoder, counts of the round that made it
    versions/<model_version>/queue.npz    task_ids, predicted class, score of that round
    live.json                             the version Label Studio serves, and since when
    rounds.json                           round history
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from backend.errors import BadRequestError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_EMBEDDING_PARTS = 32  # compaction merges parts beyond this, so loading stays one pass over few files


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, json.dumps(value, indent=1, sort_keys=True).encode())


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def safe_name(name: str, what: str) -> str:
    """A path component that cannot escape its folder (no '/', no '..', no leading dot)."""
    if not _SAFE_NAME.match(name) or ".." in name:
        raise BadRequestError(f"{what} {name!r} may only use letters, digits, '.', '_' and '-'")
    return name


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

    _open: ClassVar[dict[Path, EmbeddingCache]] = {}
    _open_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._parts: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._merged: CachedEmbeddings | None = None
        self._merged_from: tuple[str, ...] = ()
        self._lock = threading.Lock()

    @classmethod
    def at(cls, directory: Path) -> EmbeddingCache:
        """The process's one cache object for a folder, so its arrays stay loaded between rounds."""
        with cls._open_lock:
            return cls._open.setdefault(directory, cls(directory))

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


class ProjectStore:
    """State of one project in files under MODEL_DIR. Project ids are integers, model versions checked names.

    RedisProjectStore (backend/redis_store.py) keeps the same state in Redis instead, for
    workers on several machines; the embedding cache stays in files either way.
    """

    def __init__(self, model_dir: Path, project_id: int) -> None:
        self.project_id = int(project_id)
        self.root = Path(model_dir) / "projects" / str(self.project_id)

    def embeddings(self, encoder_key: str) -> EmbeddingCache:
        return EmbeddingCache.at(self.root / "embeddings" / safe_name(encoder_key, "encoder key"))

    def version_dir(self, model_version: str) -> Path:
        return self.root / "versions" / safe_name(model_version, "model version")

    def live(self) -> dict[str, Any] | None:
        value = read_json(self.root / "live.json")
        return value if isinstance(value, dict) else None

    def set_live(self, model_version: str) -> None:
        atomic_write_json(self.root / "live.json", {"model_version": model_version, "since": time.time()})

    def save_meta(self, model_version: str, meta: dict[str, Any]) -> None:
        atomic_write_json(self.version_dir(model_version) / "meta.json", meta)

    def load_meta(self, model_version: str) -> dict[str, Any] | None:
        value = read_json(self.version_dir(model_version) / "meta.json")
        return value if isinstance(value, dict) else None

    def save_head(self, model_version: str, state_dict: dict[str, Any]) -> None:
        atomic_write_bytes(self.version_dir(model_version) / "head.pt", head_to_bytes(state_dict))

    def load_head(self, model_version: str) -> dict[str, Any]:
        return head_from_bytes((self.version_dir(model_version) / "head.pt").read_bytes())

    def save_queue(self, model_version: str, task_ids: np.ndarray, predicted: np.ndarray, score: np.ndarray) -> None:
        atomic_write_bytes(self.version_dir(model_version) / "queue.npz", queue_to_bytes(task_ids, predicted, score))

    def load_queue(self, model_version: str) -> dict[str, np.ndarray] | None:
        path = self.version_dir(model_version) / "queue.npz"
        return queue_from_bytes(path.read_bytes()) if path.exists() else None

    def versions(self) -> list[str]:
        folder = self.root / "versions"
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def remove_version(self, model_version: str) -> None:
        shutil.rmtree(self.version_dir(model_version), ignore_errors=True)

    def rounds(self) -> list[dict[str, Any]]:
        value = read_json(self.root / "rounds.json", [])
        return value if isinstance(value, list) else []

    def append_round(self, record: dict[str, Any]) -> None:
        atomic_write_json(self.root / "rounds.json", [*self.rounds(), record])


def head_to_bytes(state_dict: dict[str, Any]) -> bytes:
    import torch  # imported here so that reading other state never loads torch

    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()


def head_from_bytes(data: bytes) -> dict[str, Any]:
    import torch

    return dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))


def queue_to_bytes(task_ids: np.ndarray, predicted: np.ndarray, score: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(
        buffer, task_ids=task_ids.astype(np.int64), predicted=predicted.astype(np.int64), score=score.astype(np.float32)
    )
    return buffer.getvalue()


def queue_from_bytes(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as queue:
        return {key: queue[key] for key in ("task_ids", "predicted", "score")}


def project_ids_in(model_dir: Path) -> list[int]:
    """Projects that have state under MODEL_DIR."""
    folder = Path(model_dir) / "projects"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []
