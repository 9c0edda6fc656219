"""Project state in Redis, so that any worker on any machine can run any project's round.

What every process must agree on (the live version, the round history, each version's
head, metadata and queue, the fine-tuned encoders) lives in Redis; the embedding cache stays on each machine's
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

from backend.state.atomic import safe_name
from backend.state.files import FileProjectStore, queue_from_bytes, queue_to_bytes
from backend.state.ledger import LabelLedger, RedisHashes
from backend.state.records import RoundRecord
from backend.state.redis_text import as_text
from backend.state.summary import HistorySummary

KEY_PREFIX = "alfamix"  # every key of this backend in Redis starts with it
PROJECTS_KEY = f"{KEY_PREFIX}:state:projects"


def redis_connection(url: str) -> Redis:
    """Bounded waits, so an unreachable Redis fails a request in seconds instead of hanging it."""
    return Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10, health_check_interval=30)


class RedisProjectStore(FileProjectStore):
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

    def save_head(self, model_version: str, data: bytes) -> None:
        self._save(model_version, "head", data)

    def load_head(self, model_version: str) -> bytes:
        raw = self._load(model_version, "head")
        if raw is None:
            raise FileNotFoundError(f"project {self.project_id}: no head stored for {model_version}")
        return raw

    def save_queue(self, model_version: str, task_ids: np.ndarray, predicted: np.ndarray, score: np.ndarray) -> None:
        self._save(model_version, "queue", queue_to_bytes(task_ids, predicted, score))

    def load_queue(self, model_version: str) -> dict[str, np.ndarray] | None:
        raw = self._load(model_version, "queue")
        return queue_from_bytes(raw) if raw else None

    def versions(self) -> list[str]:
        return sorted(as_text(v) for v in self.connection.smembers(f"{self._key}:versions"))

    def remove_version(self, model_version: str) -> None:
        with self.connection.pipeline() as pipe:
            pipe.delete(self._version_key(model_version))
            pipe.srem(f"{self._key}:versions", model_version)
            pipe.execute()

    def encoders(self) -> list[dict[str, Any]]:
        metas = [json.loads(raw) for raw in self.connection.hvals(f"{self._key}:encoders")]
        return sorted(metas, key=lambda m: m["created_at"])

    def save_encoder(self, meta: dict[str, Any], data: bytes) -> None:
        version = safe_name(meta["version"], "encoder version")
        with self.connection.pipeline() as pipe:  # MULTI/EXEC: listed together with its weights
            pipe.set(f"{self._key}:encoder:{version}", data)
            pipe.hset(f"{self._key}:encoders", version, json.dumps(meta))
            pipe.sadd(PROJECTS_KEY, self.project_id)
            pipe.execute()

    def load_encoder(self, encoder_version: str) -> bytes:
        raw = self.connection.get(f"{self._key}:encoder:{safe_name(encoder_version, 'encoder version')}")
        if raw is None:
            raise FileNotFoundError(f"project {self.project_id}: no encoder stored for {encoder_version}")
        return raw.encode() if isinstance(raw, str) else raw

    def remove_encoder(self, encoder_version: str) -> None:
        version = safe_name(encoder_version, "encoder version")
        with self.connection.pipeline() as pipe:
            pipe.delete(f"{self._key}:encoder:{version}")
            pipe.hdel(f"{self._key}:encoders", version)
            pipe.execute()

    def rounds(self) -> list[RoundRecord]:
        return [RoundRecord.from_dict(json.loads(raw)) for raw in self.connection.lrange(f"{self._key}:rounds", 0, -1)]

    def summary(self) -> HistorySummary:
        raw = self.connection.get(f"{self._key}:summary")
        return HistorySummary.from_dict(json.loads(raw)) if raw else HistorySummary.of(self.rounds())

    def append_round(self, record: RoundRecord) -> None:
        """The record and the summary change together; the caller holds the project's lock."""
        summary = self.summary()
        summary.add(record)
        with self.connection.pipeline() as pipe:
            pipe.rpush(f"{self._key}:rounds", json.dumps(record.to_dict()))
            pipe.set(f"{self._key}:summary", json.dumps(summary.to_dict()))
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


def redis_ledger(connection: Redis, project_id: int) -> LabelLedger:
    return LabelLedger(RedisHashes(connection, f"{KEY_PREFIX}:ledger:{int(project_id)}"))


def redis_project_ids(connection: Redis) -> list[int]:
    """Projects whose state is in Redis."""
    return sorted(int(pid) for pid in connection.smembers(PROJECTS_KEY))
