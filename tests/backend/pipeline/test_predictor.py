"""The predictor keeps a bounded number of loaded versions in memory."""

from __future__ import annotations

from pathlib import Path

import torch

from backend.labelstudio.label_config import parse_label_config
from backend.pipeline import predictor
from backend.pipeline.heads import save_head
from backend.pipeline.predictor import Predictor
from backend.settings import Settings
from backend.state.files import FileProjectStore
from backend.state.lru import LRUCache
from tests.backend.http.test_app import LIVE, install_live_model


def test_the_least_recently_used_entry_goes_first() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (1, None, 3, 2)


def test_predicting_from_many_versions_keeps_at_most_versions_kept(tmp_path: Path) -> None:
    request = install_live_model(tmp_path)
    store = FileProjectStore(tmp_path, 1)
    for n in range(predictor.VERSIONS_KEPT + 5):  # the same model under more names than the cache holds
        store.save_meta(f"v{n}", store.load_meta(LIVE) or {})
        store.save_head(f"v{n}", store.load_head(LIVE))
    model = Predictor(Settings(model_dir=tmp_path))
    spec = parse_label_config(request["label_config"])
    for n in range(predictor.VERSIONS_KEPT + 5):
        answer = model.predict(1, f"v{n}", spec, request["tasks"])
        assert [r["result"][0]["value"]["choices"] for r in answer.results] == [["7"], ["2"]]
    assert len(model._versions) == predictor.VERSIONS_KEPT


def test_a_live_version_from_another_encoder_gives_empty_predictions_not_an_error(tmp_path: Path) -> None:
    request = install_live_model(tmp_path)
    store = FileProjectStore(tmp_path, 1)
    meta = store.load_meta(LIVE) or {}
    spec = parse_label_config(request["label_config"])
    model = Predictor(Settings(model_dir=tmp_path))
    empty = [{"result": [], "score": 1.0, "model_version": LIVE}] * 2

    store.save_meta(LIVE, meta | {"encoder_key": "resnet18-IMAGENET1K_V1"})  # trained before an encoder change
    assert model.predict(1, LIVE, spec, request["tasks"]).results == empty

    # A version from before encoder_key was stored, trained on 1,280-d embeddings; the cache now holds 2-d ones.
    store.save_meta("v-old", meta | {"embedding_dim": 1280})
    save_head(store, "v-old", torch.nn.Linear(1280, 10))
    assert model.predict(1, "v-old", spec, request["tasks"]).results == [r | {"model_version": "v-old"} for r in empty]
