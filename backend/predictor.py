"""Answer /predict from the project's live head and cached embeddings, embedding a missing task on the fly."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
from redis import Redis
from redis.exceptions import RedisError

from backend.annotations import TaskRecord
from backend.context import Context
from backend.label_config import ClassificationSpec
from backend.predictions import choices_result, predicted_label_sets
from backend.redis_store import open_project_store
from backend.settings import Settings
from backend.store import EmbeddingCache, ProjectStore

logger = logging.getLogger(__name__)

UNRANKED_SCORE = 1.0  # a task the last round did not rank goes to the end of the queue
UNTRAINED_VERSION = "alfamix-untrained"


class Predictor:
    """Keeps heads, queues and embedding caches in memory between requests (keyed by model version)."""

    def __init__(self, settings: Settings, context: Context | None, connection: Redis | None = None) -> None:
        self.settings = settings
        self.context = context
        self.connection = connection
        self._live: dict[int, str | None] = {}  # last live version read, served while Redis is unreachable
        self._metas: dict[tuple[int, str], dict[str, Any] | None] = {}
        self._heads: dict[tuple[int, str], Any] = {}
        self._scores: dict[tuple[int, str], dict[int, float]] = {}
        self._caches: dict[int, EmbeddingCache] = {}
        self._lock = threading.Lock()

    def live_version(self, project_id: int) -> str | None:
        """The project's live version; the last one read when the state (Redis) is unreachable."""
        store = open_project_store(self.settings.model_dir, project_id, self.connection)
        try:
            version = (store.live() or {}).get("model_version")
        except RedisError as error:
            logger.warning(
                "project %s: state unreachable (%s); serving the last known version", project_id, type(error).__name__
            )
            return self._live.get(project_id)
        self._live[project_id] = version
        return version

    def predict(self, project_id: int, spec: ClassificationSpec, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        store = open_project_store(self.settings.model_dir, project_id, self.connection)
        model_version = self.live_version(project_id)
        try:
            meta = self._meta(project_id, model_version, store) if model_version else None
        except RedisError:
            meta = None
        if not model_version or meta is None or meta.get("head") is None:
            return [self._empty(UNTRAINED_VERSION) for _ in tasks]
        if meta.get("label_fingerprint") != spec.fingerprint:
            logger.warning(
                "project %s: the label config changed since %s was trained; predictions wait for the next round",
                project_id,
                model_version,
            )
            return [self._empty(model_version) for _ in tasks]
        z, found = self._embeddings(project_id, store, spec, tasks)  # (T, D), (T,)
        if not found.any():
            return [self._empty(model_version) for _ in tasks]
        head = self._head(project_id, model_version, store, meta)
        scores = self._queue_scores(project_id, model_version, store)
        # torch loads on the first prediction, not when the web process starts.
        import torch

        from model.head import predict_proba

        probs = predict_proba(head, torch.from_numpy(z)).numpy()  # (T, C)
        label_sets = predicted_label_sets(probs, spec.multi_label)
        results = []
        for i, task in enumerate(tasks):
            if not found[i]:
                results.append(self._empty(model_version))
                continue
            results.append(
                {
                    "result": choices_result(spec, label_sets[i]),
                    "score": scores.get(int(task["id"]), UNRANKED_SCORE),
                    "model_version": model_version,
                }
            )
        return results

    def _embeddings(
        self, project_id: int, store: ProjectStore, spec: ClassificationSpec, tasks: list[dict[str, Any]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(T, D) embeddings of the tasks and (T,) whether each has one; missing ones are embedded now."""
        from backend.embedder import embed_missing, encoder_key, load_encoder

        with self._lock:
            cache = self._caches.setdefault(project_id, store.embeddings(encoder_key(self.settings)))
        ids = np.array([int(task["id"]) for task in tasks], dtype=np.int64)
        rows = cache.load().rows_of(ids)  # (T,)
        if (rows < 0).any() and self.context is not None:
            records = [_record(task, spec) for task, row in zip(tasks, rows, strict=True) if row < 0]
            embed_missing(
                project_id,
                records,
                cache,
                load_encoder(self.settings),
                self.context.fetcher,
                self.settings.max_image_pixels,
            )
            rows = cache.load().rows_of(ids)
        cached = cache.load()
        found = rows >= 0
        z = cached.z[np.where(found, rows, 0)] if len(cached.z) else np.zeros((len(tasks), 0), np.float32)
        return z, found

    def _meta(self, project_id: int, model_version: str, store: ProjectStore) -> dict[str, Any] | None:
        key = (project_id, model_version)
        if key not in self._metas:
            self._metas[key] = store.load_meta(model_version)  # a version's files never change
        return self._metas[key]

    def _head(self, project_id: int, model_version: str, store: ProjectStore, meta: dict[str, Any]) -> Any:
        key = (project_id, model_version)
        with self._lock:
            if key not in self._heads:
                from model.head import HeadConfig, build_head

                config = HeadConfig(kind=meta["head"]["kind"], hidden_dim=meta["head"]["hidden_dim"])
                head = build_head(meta["embedding_dim"], len(meta["labels"]), config)
                head.load_state_dict(store.load_head(model_version))
                self._heads[key] = head.eval()
            return self._heads[key]

    def _queue_scores(self, project_id: int, model_version: str, store: ProjectStore) -> dict[int, float]:
        key = (project_id, model_version)
        with self._lock:
            if key not in self._scores:
                queue = store.load_queue(model_version)
                self._scores[key] = (
                    dict(zip(queue["task_ids"].tolist(), queue["score"].tolist(), strict=True)) if queue else {}
                )
            return self._scores[key]

    @staticmethod
    def _empty(model_version: str) -> dict[str, Any]:
        return {"result": [], "score": UNRANKED_SCORE, "model_version": model_version}


def _record(task: dict[str, Any], spec: ClassificationSpec) -> TaskRecord:
    url = (task.get("data") or {}).get(spec.data_key)
    return TaskRecord(int(task["id"]), url if isinstance(url, str) and url else None, ())
