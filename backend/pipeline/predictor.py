"""Answer /predict from the project's live head and cached embeddings.

A task the cache lacks gets an empty prediction, and the caller asks for an embed job: the
web process never runs the encoder. Torch loads with the first head, on the first /predict.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from redis import Redis
from redis.exceptions import RedisError

from backend.labelstudio.label_config import ClassificationSpec
from backend.labelstudio.predictions import (
    UNRANKED_SCORE,
    UNTRAINED_VERSION,
    choices_result,
    empty_prediction,
    predicted_label_sets,
)
from backend.pipeline.embedder import encoder_key
from backend.pipeline.finetuning import in_encoder_space
from backend.pipeline.heads import load_head
from backend.settings import Settings
from backend.state.lru import LRUCache
from backend.state.store import ProjectStore, open_project_store
from model.head import predict_proba

logger = logging.getLogger(__name__)

VERSIONS_KEPT = 8  # (project, version) entries kept in memory: the live one of each busy project


@dataclass(frozen=True)
class LoadedVersion:
    """What /predict needs of one model version; a version's files never change."""

    meta: dict[str, Any]
    head: torch.nn.Module | None
    scores: dict[int, float]  # task id -> queue score


@dataclass(frozen=True)
class Predictions:
    results: list[dict[str, Any]]  # one per task, in the order asked
    missing: int  # tasks without an embedding: an embed job gives them one


class Predictor:
    def __init__(self, settings: Settings, connection: Redis | None = None) -> None:
        self.settings = settings
        self.connection = connection
        self._versions: LRUCache[tuple[int, str], LoadedVersion] = LRUCache(VERSIONS_KEPT)
        self._lock = threading.Lock()

    def predict(
        self, project_id: int, model_version: str, spec: ClassificationSpec, tasks: list[dict[str, Any]]
    ) -> Predictions:
        """Predictions of ``model_version`` (the live one) for the tasks, in the order given."""
        store = open_project_store(self.settings.model_dir, project_id, self.connection)
        try:
            version = self._version(store, model_version)
        except RedisError:
            version = None
        if version is None or version.head is None:
            return Predictions([empty_prediction(UNTRAINED_VERSION) for _ in tasks], 0)
        if version.meta.get("label_fingerprint") != spec.fingerprint:
            logger.warning(
                "project %s: the label config changed since %s was trained; predictions wait for the next round",
                project_id,
                model_version,
            )
            return Predictions([empty_prediction(model_version) for _ in tasks], 0)
        # The version's own space: the pretrained encoder's, or that of a fine-tuned version of it.
        space = version.meta.get("encoder_key", encoder_key(self.settings))
        cached = store.embeddings(space).load()
        if not in_encoder_space(space, self.settings) or (
            len(cached.z) and cached.z.shape[1] != version.meta["embedding_dim"]
        ):
            # ALFAMIX_ENCODER changed since the live version: its head reads another embedding space.
            logger.warning(
                "project %s: %s was trained on %s embeddings, the backend now uses %s; "
                "predictions wait for the next round",
                project_id,
                model_version,
                version.meta.get("encoder_key", version.meta.get("encoder")),
                encoder_key(self.settings),
            )
            return Predictions([empty_prediction(model_version) for _ in tasks], 0)
        rows = cached.rows_of(np.array([int(task["id"]) for task in tasks], dtype=np.int64))  # (T,)
        found = rows >= 0  # (T,)
        if not found.any():
            return Predictions([empty_prediction(model_version) for _ in tasks], len(tasks))
        z = torch.from_numpy(cached.z[rows[found]])  # (F, D)
        label_sets = iter(predicted_label_sets(predict_proba(version.head, z).numpy(), spec.multi_label))
        results = [
            {
                "result": choices_result(spec, next(label_sets)),
                "score": version.scores.get(int(task["id"]), UNRANKED_SCORE),
                "model_version": model_version,
            }
            if has_embedding
            else empty_prediction(model_version)
            for task, has_embedding in zip(tasks, found, strict=True)
        ]
        return Predictions(results, int((~found).sum()))

    def _version(self, store: ProjectStore, model_version: str) -> LoadedVersion | None:
        key = (store.project_id, model_version)
        with self._lock:
            if (loaded := self._versions.get(key)) is not None:
                return loaded
            meta = store.load_meta(model_version)
            if meta is None:
                return None
            head = load_head(store, model_version, meta) if meta.get("head") else None
            queue = store.load_queue(model_version)
            scores = dict(zip(queue["task_ids"].tolist(), queue["score"].tolist(), strict=True)) if queue else {}
            return self._versions.put(key, LoadedVersion(meta, head, scores))
