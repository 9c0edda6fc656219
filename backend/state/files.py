"""Per-project state under MODEL_DIR, every file written atomically (write, fsync, rename).

Layout of ``MODEL_DIR/projects/<project_id>/``:
    embeddings/<encoder_key>/part-*.npz   cached embeddings, appended in parts
    versions/<model_version>/head.pt      head state_dict (loaded with weights_only=True)
    versions/<model_version>/meta.json    labels, encoder, counts of the round that made it
    versions/<model_version>/queue.npz    task_ids, predicted class, score of that round
    encoders/<encoder_version>/weights.pt a fine-tuned encoder's tuned entries (weights_only=True)
    encoders/<encoder_version>/meta.json  what it was tuned on, and when
    live.json                             the version Label Studio serves, and since when
    rounds.jsonl                          round history, one RoundRecord per line (appended)
    summary.json                          the history folded into what status and /metrics show
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from backend.state.atomic import atomic_write_bytes, atomic_write_json, read_json, safe_name
from backend.state.embeddings import EmbeddingCache
from backend.state.records import RoundRecord
from backend.state.summary import HistorySummary


class FileProjectStore:
    """State of one project in files under MODEL_DIR. Project ids are integers, model versions checked names.

    RedisProjectStore (backend/state/redis_state.py) keeps the same state in Redis instead, for
    workers on several machines; the embedding cache stays in files either way.
    """

    def __init__(self, model_dir: Path, project_id: int) -> None:
        self.project_id = int(project_id)
        self.root = Path(model_dir) / "projects" / str(self.project_id)

    def embeddings(self, encoder_key: str) -> EmbeddingCache:
        return EmbeddingCache.at(self.root / "embeddings" / safe_name(encoder_key, "encoder key"))

    def remove_embeddings(self, encoder_key: str) -> None:
        shutil.rmtree(self.root / "embeddings" / safe_name(encoder_key, "encoder key"), ignore_errors=True)

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

    def save_head(self, model_version: str, data: bytes) -> None:
        atomic_write_bytes(self.version_dir(model_version) / "head.pt", data)

    def load_head(self, model_version: str) -> bytes:
        return (self.version_dir(model_version) / "head.pt").read_bytes()

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

    def encoders(self) -> list[dict[str, Any]]:
        folder = self.root / "encoders"
        metas = [read_json(p / "meta.json") for p in folder.iterdir()] if folder.is_dir() else []
        return sorted((m for m in metas if isinstance(m, dict)), key=lambda m: m["created_at"])

    def save_encoder(self, meta: dict[str, Any], data: bytes) -> None:
        folder = self.root / "encoders" / safe_name(meta["version"], "encoder version")
        atomic_write_bytes(folder / "weights.pt", data)
        atomic_write_json(folder / "meta.json", meta)  # last: a version is listed once its weights are there

    def load_encoder(self, encoder_version: str) -> bytes:
        return (self.root / "encoders" / safe_name(encoder_version, "encoder version") / "weights.pt").read_bytes()

    def remove_encoder(self, encoder_version: str) -> None:
        shutil.rmtree(self.root / "encoders" / safe_name(encoder_version, "encoder version"), ignore_errors=True)

    def rounds(self) -> list[RoundRecord]:
        """The whole history, oldest first (rounds.json holds what was stored before rounds.jsonl)."""
        legacy = read_json(self.root / "rounds.json", [])
        lines = self._rounds_file.read_text().splitlines() if self._rounds_file.exists() else []
        raw = [*(legacy if isinstance(legacy, list) else []), *(json.loads(line) for line in lines if line.strip())]
        return [RoundRecord.from_dict(r) for r in raw]

    def summary(self) -> HistorySummary:
        value = read_json(self.root / "summary.json")
        return HistorySummary.from_dict(value) if value else HistorySummary.of(self.rounds())

    def append_round(self, record: RoundRecord) -> None:
        """Append one line, then replace the summary; the caller holds the project's lock."""
        summary = self.summary()
        summary.add(record)
        self._rounds_file.parent.mkdir(parents=True, exist_ok=True)
        with self._rounds_file.open("a") as handle:
            handle.write(json.dumps(record.to_dict(), sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        atomic_write_json(self.root / "summary.json", summary.to_dict())

    @property
    def _rounds_file(self) -> Path:
        return self.root / "rounds.jsonl"


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
