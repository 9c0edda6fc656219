"""Project state in Redis, so that any worker on any machine can run any project's round.

What every process must agree on (the live version, the round history, each version's
head, metadata and queue) lives in Redis; the embedding cache stays on each machine's
MODEL_DIR (inherited from ProjectStore), because a worker can always recompute it and it
is the bulk of the data (5 KiB per task at 1,280 dimensions).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from redis import Redis

from backend.coordination import KEY_PREFIX
from backend.ledger import FileHashes, LabelLedger, RedisHashes
from backend.store import ProjectStore, head_from_bytes, head_to_bytes, queue_from_bytes, queue_to_bytes, safe_name

PROJECTS_KEY = f"{KEY_PREFIX}:state:projects"


class RedisProjectStore(ProjectStore):
    def __init__(self, connection: Redis, model_dir: Path, project_id: int) -> None:
        super().__init__(model_dir, project_id)
        self.connection = connection
        self._key = f"{KEY_PREFIX}:state:{self.project_id}"

    def live(self) -> dict[str, Any] | None:
        raw = self.connection.get(f"{self._key}:live")
        return json.loads(raw) if raw else None

    def set_live(self, model_version: str) -> None:
        self.connection.set(f"{self._key}:live", json.dumps({"model_version": model_version, "since": time.time()}))

    def save_meta(self, model_version: str, meta: dict[str, Any]) -> None:
        self._save(model_version, "meta", json.dumps(meta).encode())

    def load_meta(self, model_version: str) -> dict[str, Any] | None:
        raw = self._load(model_version, "meta")
        return json.loads(raw) if raw else None

    def save_head(self, model_version: str, state_dict: dict[str, Any]) -> None:
        self._save(model_version, "head", head_to_bytes(state_dict))

    def load_head(self, model_version: str) -> dict[str, Any]:
        raw = self._load(model_version, "head")
        if raw is None:
            raise FileNotFoundError(f"project {self.project_id}: no head stored for {model_version}")
        return head_from_bytes(raw)

    def save_queue(self, model_version: str, task_ids: np.ndarray, predicted: np.ndarray, score: np.ndarray) -> None:
        self._save(model_version, "queue", queue_to_bytes(task_ids, predicted, score))

    def load_queue(self, model_version: str) -> dict[str, np.ndarray] | None:
        raw = self._load(model_version, "queue")
        return queue_from_bytes(raw) if raw else None

    def versions(self) -> list[str]:
        return sorted(_text(v) for v in self.connection.smembers(f"{self._key}:versions"))

    def remove_version(self, model_version: str) -> None:
        with self.connection.pipeline() as pipe:
            pipe.delete(self._version_key(model_version))
            pipe.srem(f"{self._key}:versions", model_version)
            pipe.execute()

    def rounds(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.connection.lrange(f"{self._key}:rounds", 0, -1)]

    def append_round(self, record: dict[str, Any]) -> None:
        with self.connection.pipeline() as pipe:
            pipe.rpush(f"{self._key}:rounds", json.dumps(record))
            pipe.sadd(PROJECTS_KEY, self.project_id)
            pipe.execute()

    def _save(self, model_version: str, field: str, data: bytes) -> None:
        with self.connection.pipeline() as pipe:  # MULTI/EXEC: the version and its index change together
            pipe.hset(self._version_key(model_version), field, data)
            pipe.sadd(f"{self._key}:versions", model_version)
            pipe.sadd(PROJECTS_KEY, self.project_id)
            pipe.execute()

    def _load(self, model_version: str, field: str) -> bytes | None:
        raw = self.connection.hget(self._version_key(model_version), field)
        return raw.encode() if isinstance(raw, str) else raw

    def _version_key(self, model_version: str) -> str:
        return f"{self._key}:version:{safe_name(model_version, 'model version')}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def open_project_store(model_dir: Path, project_id: int, connection: Redis | None) -> ProjectStore:
    """Redis-backed state when the backend runs with REDIS_URL, files otherwise."""
    if connection is None:
        return ProjectStore(model_dir, project_id)
    return RedisProjectStore(connection, model_dir, project_id)


def open_project_ledger(model_dir: Path, project_id: int, connection: Redis | None) -> LabelLedger:
    """The project's label ledger, in Redis beside its state, or in MODEL_DIR."""
    if connection is None:
        return LabelLedger(FileHashes.at(Path(model_dir) / "projects" / str(int(project_id)) / "ledger"))
    return LabelLedger(RedisHashes(connection, f"{KEY_PREFIX}:ledger:{int(project_id)}"))


def project_ids(model_dir: Path, connection: Redis | None) -> list[int]:
    """Projects with state, wherever it is kept."""
    from backend.store import project_ids_in

    if connection is None:
        return project_ids_in(model_dir)
    return sorted(int(pid) for pid in connection.smembers(PROJECTS_KEY))
