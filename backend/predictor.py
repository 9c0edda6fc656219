"""Answer /predict from the project's live head and cached embeddings, embedding a missing task on the fly."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from backend.context import Context
from backend.errors import MediaError
from backend.label_config import ClassificationSpec
from backend.media import decode_image
from backend.predictions import choices_result, predicted_label_sets
from backend.settings import Settings
from backend.store import EmbeddingCache, ProjectStore

logger = logging.getLogger(__name__)

UNRANKED_SCORE = 1.0  # a task the last round did not rank goes to the end of the queue
UNTRAINED_VERSION = "alfamix-untrained"


class Predictor:
    """Keeps heads, queues and embedding caches in memory between requests (keyed by model version)."""

    def __init__(self, settings: Settings, context: Context | None) -> None:
        self.settings = settings
        self.context = context
        self._heads: dict[tuple[int, str], Any] = {}
        self._scores: dict[tuple[int, str], dict[int, float]] = {}
        self._caches: dict[int, EmbeddingCache] = {}
        self._lock = threading.Lock()

    def predict(self, project_id: int, spec: ClassificationSpec, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        store = ProjectStore(self.settings.model_dir, project_id)
        model_version = (store.live() or {}).get("model_version")
        meta = store.load_meta(model_version) if model_version else None
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
        head = self._head(project_id, model_version, store, meta)
        scores = self._queue_scores(project_id, model_version, store)
        import torch

        from model.head import predict_proba

        probs = predict_proba(head, torch.from_numpy(z)).numpy() if len(z) else np.zeros((0, len(spec.labels)))
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
        from backend.embedder import encoder_key

        with self._lock:
            cache = self._caches.setdefault(project_id, store.embeddings(encoder_key(self.settings)))
        ids = np.array([int(task["id"]) for task in tasks], dtype=np.int64)
        cached = cache.load()
        rows = cached.rows_of(ids)
        dim = cached.z.shape[1] if cached.z.ndim == 2 and len(cached.z) else 0
        missing = [i for i in range(len(tasks)) if rows[i] < 0]
        fresh = self._embed_now(project_id, spec, [tasks[i] for i in missing], cache) if missing else {}
        if fresh:
            dim = next(iter(fresh.values())).shape[0]
        z = np.zeros((len(tasks), dim), dtype=np.float32)  # (T, D)
        found = np.zeros(len(tasks), dtype=bool)
        for i in range(len(tasks)):
            if rows[i] >= 0:
                z[i], found[i] = cached.z[rows[i]], True
            elif int(ids[i]) in fresh:
                z[i], found[i] = fresh[int(ids[i])], True
        return z, found

    def _embed_now(
        self, project_id: int, spec: ClassificationSpec, tasks: list[dict[str, Any]], cache: EmbeddingCache
    ) -> dict[int, np.ndarray]:
        if self.context is None:
            return {}
        from backend.embedder import load_encoder
        from model.embedding import embed_images

        images, kept_ids, urls = [], [], []
        for task in tasks:
            task_id, url = int(task["id"]), (task.get("data") or {}).get(spec.data_key)
            if not isinstance(url, str) or not url:
                logger.warning("project %s task %s: no image under data.%s", project_id, task_id, spec.data_key)
                continue
            try:
                data = self.context.fetcher.fetch(task_id, url)
                images.append(decode_image(task_id, data, self.settings.max_image_pixels))
            except MediaError as error:
                logger.warning("project %s: no prediction: %s", project_id, error)
                continue
            kept_ids.append(task_id)
            urls.append(url)
        if not images:
            return {}
        runtime = load_encoder(self.settings)
        z = embed_images(runtime.encoder, images, device=runtime.device, batch_size=runtime.batch_size).numpy()
        cache.add(np.array(kept_ids, dtype=np.int64), z, urls)
        return dict(zip(kept_ids, z, strict=True))

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
