"""RedisProjectStore keeps the same state as the file store, in Redis, readable from any process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from redis import Redis

from backend.errors import BadRequestError
from backend.pipeline.heads import load_head, save_head
from backend.state import redis_state
from backend.state.records import RoundRecord
from backend.state.redis_state import RedisProjectStore
from backend.state.store import ProjectStore, open_project_store, project_ids


@pytest.fixture
def connection(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Redis]:
    prefix = f"alfamix-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(redis_state, "KEY_PREFIX", prefix)
    monkeypatch.setattr(redis_state, "PROJECTS_KEY", f"{prefix}:state:projects")
    client = Redis.from_url(redis_url)
    yield client
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


@pytest.fixture(params=["files", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path, connection: Redis) -> ProjectStore:
    return open_project_store(tmp_path, 3, connection if request.param == "redis" else None)


def test_live_version_round_trip(store: ProjectStore) -> None:
    assert store.live() is None
    store.set_live("alfamix-1-20260101000000")
    assert store.live()["model_version"] == "alfamix-1-20260101000000"


def test_a_version_keeps_meta_head_and_queue(store: ProjectStore) -> None:
    head = torch.nn.Linear(3, 2)
    meta = {"labels": ["a", "b"], "head": {"kind": "linear", "hidden_dim": 8}, "embedding_dim": 3}
    store.save_meta("v1", meta)
    save_head(store, "v1", head)
    store.save_queue("v1", np.array([5, 6]), np.array([1, 0]), np.array([0.0, 1.0]))
    assert store.load_meta("v1") == meta
    assert torch.equal(load_head(store, "v1", meta).weight, head.weight)
    queue = store.load_queue("v1")
    assert queue is not None
    assert queue["task_ids"].tolist() == [5, 6] and queue["predicted"].tolist() == [1, 0]
    assert store.versions() == ["v1"]
    store.remove_version("v1")
    assert store.versions() == [] and store.load_meta("v1") is None and store.load_queue("v1") is None


def test_encoder_versions_are_listed_oldest_first_with_their_weights(store: ProjectStore) -> None:
    assert store.encoders() == []
    store.save_encoder({"version": "ft2-b", "created_at": 20.0, "n_labels": 200}, b"second")
    store.save_encoder({"version": "ft1-a", "created_at": 10.0, "n_labels": 100}, b"first")
    assert [m["version"] for m in store.encoders()] == ["ft1-a", "ft2-b"]
    assert store.encoders()[1]["n_labels"] == 200
    assert store.load_encoder("ft1-a") == b"first"
    store.remove_encoder("ft1-a")
    assert [m["version"] for m in store.encoders()] == ["ft2-b"]
    with pytest.raises(FileNotFoundError):
        store.load_encoder("ft1-a")
    with pytest.raises(BadRequestError):
        store.load_encoder("../ft2-b")


def test_rounds_append_in_order_and_the_summary_follows(store: ProjectStore) -> None:
    store.append_round(RoundRecord("done", 1.0, model_version="v1", n_predictions=5))
    store.append_round(RoundRecord("failed", 2.0, error="Label Studio down"))
    assert [(r.status, r.finished_at) for r in store.rounds()] == [("done", 1.0), ("failed", 2.0)]
    summary = store.summary()
    assert (summary.n_rounds, summary.n_done, summary.n_failed, summary.n_predictions) == (2, 1, 1, 5)
    assert [r.finished_at for r in summary.recent] == [1.0, 2.0]


def test_a_crafted_model_version_is_refused(store: ProjectStore) -> None:
    with pytest.raises(BadRequestError):
        store.save_meta("../../escape", {})


def test_redis_state_is_shared_between_stores_with_different_model_dirs(tmp_path: Path, connection: Redis) -> None:
    writer = RedisProjectStore(connection, tmp_path / "machine-a", 8)
    reader = RedisProjectStore(connection, tmp_path / "machine-b", 8)
    writer.set_live("v2")
    writer.append_round(RoundRecord("done", 5.0))
    writer.save_meta("v2", {"labels": ["x", "y"]})
    assert reader.live()["model_version"] == "v2"
    assert reader.rounds() == [RoundRecord("done", 5.0)]
    assert reader.load_meta("v2") == {"labels": ["x", "y"]}
    assert project_ids(tmp_path, connection) == [8]
    # The embedding cache stays on each machine's own MODEL_DIR.
    assert writer.embeddings("enc").directory == tmp_path / "machine-a" / "projects" / "8" / "embeddings" / "enc"
    assert not (tmp_path / "machine-a" / "projects" / "8" / "live.json").exists()
