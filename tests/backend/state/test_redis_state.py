"""RedisProjectStore keeps the same state as the file store, in Redis, readable from any process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from redis import Redis

from backend import redis_store
from backend.errors import BadRequestError
from backend.state.redis_state import RedisProjectStore, open_project_store, project_ids
from backend.state.files import ProjectStore


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch) -> Iterator[Redis]:
    prefix = f"alfamix-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(redis_store, "KEY_PREFIX", prefix)
    monkeypatch.setattr(redis_store, "PROJECTS_KEY", f"{prefix}:state:projects")
    client = Redis(host="127.0.0.1", port=6379, db=15)
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
    store.save_meta("v1", {"labels": ["a", "b"]})
    store.save_head("v1", head.state_dict())
    store.save_queue("v1", np.array([5, 6]), np.array([1, 0]), np.array([0.0, 1.0]))
    assert store.load_meta("v1") == {"labels": ["a", "b"]}
    assert torch.equal(store.load_head("v1")["weight"], head.weight)
    queue = store.load_queue("v1")
    assert queue is not None
    assert queue["task_ids"].tolist() == [5, 6] and queue["predicted"].tolist() == [1, 0]
    assert store.versions() == ["v1"]
    store.remove_version("v1")
    assert store.versions() == [] and store.load_meta("v1") is None and store.load_queue("v1") is None


def test_rounds_append_in_order(store: ProjectStore) -> None:
    store.append_round({"n": 1})
    store.append_round({"n": 2})
    assert store.rounds() == [{"n": 1}, {"n": 2}]


def test_a_crafted_model_version_is_refused(store: ProjectStore) -> None:
    with pytest.raises(BadRequestError):
        store.save_meta("../../escape", {})


def test_redis_state_is_shared_between_stores_with_different_model_dirs(tmp_path: Path, connection: Redis) -> None:
    writer = RedisProjectStore(connection, tmp_path / "machine-a", 8)
    reader = RedisProjectStore(connection, tmp_path / "machine-b", 8)
    writer.set_live("v2")
    writer.append_round({"status": "done"})
    writer.save_meta("v2", {"labels": ["x", "y"]})
    assert reader.live()["model_version"] == "v2"
    assert reader.rounds() == [{"status": "done"}]
    assert reader.load_meta("v2") == {"labels": ["x", "y"]}
    assert project_ids(tmp_path, connection) == [8]
    # The embedding cache stays on each machine's own MODEL_DIR.
    assert writer.embeddings("enc").directory == tmp_path / "machine-a" / "projects" / "8" / "embeddings" / "enc"
    assert not (tmp_path / "machine-a" / "projects" / "8" / "live.json").exists()
