"""What every reader and writer of a project's state relies on, and where that state lives.

Two implementations: FileProjectStore (MODEL_DIR, the single-process default) and
RedisProjectStore (REDIS_URL: workers on several machines share it). The embedding cache
stays in files either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
from redis import Redis

from backend.state.embeddings import EmbeddingCache
from backend.state.files import FileProjectStore, project_ids_in
from backend.state.ledger import FileHashes, LabelLedger
from backend.state.records import RoundRecord
from backend.state.redis_state import RedisProjectStore, redis_ledger, redis_project_ids
from backend.state.summary import HistorySummary


class ProjectStore(Protocol):
    project_id: int

    def embeddings(self, encoder_key: str) -> EmbeddingCache: ...

    def remove_embeddings(self, encoder_key: str) -> None: ...

    def live(self) -> dict[str, Any] | None:
        """{"model_version", "since"} of the version Label Studio serves; None before the first."""

    def set_live(self, model_version: str) -> None: ...

    def save_meta(self, model_version: str, meta: dict[str, Any]) -> None: ...

    def load_meta(self, model_version: str) -> dict[str, Any] | None: ...

    def save_head(self, model_version: str, data: bytes) -> None:
        """A head's state_dict as torch.save wrote it (the pipeline owns the format)."""

    def load_head(self, model_version: str) -> bytes: ...

    def save_queue(
        self, model_version: str, task_ids: np.ndarray, predicted: np.ndarray, score: np.ndarray
    ) -> None: ...

    def load_queue(self, model_version: str) -> dict[str, np.ndarray] | None: ...

    def versions(self) -> list[str]: ...

    def encoders(self) -> list[dict[str, Any]]:
        """Metadata of the fine-tuned encoder versions, oldest first (ALFAMIX_TRAINING=finetune)."""

    def save_encoder(self, meta: dict[str, Any], data: bytes) -> None:
        """A fine-tuned encoder's tuned entries, as torch.save wrote them, under meta["version"]."""

    def load_encoder(self, encoder_version: str) -> bytes: ...

    def remove_encoder(self, encoder_version: str) -> None: ...

    def remove_version(self, model_version: str) -> None: ...

    def rounds(self) -> list[RoundRecord]:
        """The whole history; status and /metrics read summary() instead."""

    def summary(self) -> HistorySummary: ...

    def append_round(self, record: RoundRecord) -> None: ...


def open_project_store(model_dir: Path, project_id: int, connection: Redis | None) -> ProjectStore:
    """Redis-backed state when the backend runs with REDIS_URL, files otherwise."""
    if connection is None:
        return FileProjectStore(model_dir, project_id)
    return RedisProjectStore(connection, model_dir, project_id)


def open_project_ledger(model_dir: Path, project_id: int, connection: Redis | None) -> LabelLedger:
    """The project's label ledger, in Redis beside its state, or in MODEL_DIR."""
    if connection is None:
        return LabelLedger(FileHashes.at(Path(model_dir) / "projects" / str(int(project_id)) / "ledger"))
    return redis_ledger(connection, project_id)


def project_ids(model_dir: Path, connection: Redis | None) -> list[int]:
    """Projects with state, wherever it is kept."""
    if connection is None:
        return project_ids_in(model_dir)
    return redis_project_ids(connection)
