"""Redis stops and comes back (with and without persistence) while a round is queued.

The test runs its own redis-server, so it can stop it. While Redis is down the API keeps
answering /health, /predict (from what it holds in memory) and /webhook (the event is
deferred); once Redis is back, the catch-up brings the queue up to date. The worker
process is restarted when it exited, as docker compose's restart policy would.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import redis
import requests

from devtools.backend_process import BackendProcesses
from devtools.images import write_mnist_pngs
from devtools.label_studio import LabelStudioServer, free_port
from devtools.project import backend_status, digits_project, wait_for, wait_until_idle
from tests.e2e.test_reliability import assert_queue_is_complete


class RedisServer:
    def __init__(self, folder: Path, persistent: bool) -> None:
        self.port = free_port()
        self.folder = folder
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--save",
                "",
                *persistence,
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for(lambda: self._answers(), timeout=10, what="redis-server")

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=10)

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port).ping())
        except redis.ConnectionError:
            return False


@pytest.mark.parametrize("persistent", [True, False], ids=["with-aof", "without-persistence"])
def test_a_redis_restart_loses_no_label(label_studio: LabelStudioServer, tmp_path: Path, persistent: bool) -> None:
    server = RedisServer(tmp_path, persistent)
    server.start()
    files = write_mnist_pngs(tmp_path / "png", 40, random_state=5)
    project, truth = digits_project(label_studio, f"redis restart {persistent}", files)
    env = {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.api_key,
        "REDIS_URL": server.url,
        "ALFAMIX_RECONCILE_SECONDS": "1",
    }

    with BackendProcesses(tmp_path, env, workers=1) as backend:
        project.connect(backend.url)
        wait_until_idle(backend.url, project.project_id)
        project.label_next(truth, 4)
        before = wait_until_idle(backend.url, project.project_id)
        some_task = next(t for t in project.tasks() if not t["annotations"])
        predict = {
            "tasks": [{"id": some_task["id"], "data": some_task["data"]}],
            "project": f"{project.project_id}.0",
            "label_config": project.settings()["label_config"],
        }
        served = requests.post(f"{backend.url}/predict", timeout=30, json=predict).json()["results"][0]
        assert served["model_version"] == before["live_model_version"]

        # A round queued when Redis goes: the worker is away, one more label arrives.
        backend.stop_process("worker-0")
        project.label_next(truth, 1)
        server.stop()
        # While Redis is down: the API answers.
        assert requests.get(f"{backend.url}/health", timeout=5).status_code == 200
        # /predict and /setup serve the last version this process read, from memory.
        assert requests.post(f"{backend.url}/predict", timeout=30, json=predict).json()["results"][0] == served
        setup = {"project": f"{project.project_id}.0", "schema": predict["label_config"]}
        assert requests.post(f"{backend.url}/setup", timeout=5, json=setup).json() == {
            "model_version": served["model_version"]
        }
        project.label_next(truth, 1)  # its webhook finds Redis down
        answer = requests.post(
            f"{backend.url}/webhook",
            timeout=5,
            json={"action": "START_TRAINING", "project": {"id": project.project_id}},
        )
        assert answer.status_code == 200 and answer.json()["status"] == "deferred"
        assert requests.get(f"{backend.url}/projects/{project.project_id}/status", timeout=5).status_code == 503

        server.start()
        restarted_at = time.time()
        backend.start_worker("worker-1")
        status = wait_for(lambda: _caught_up(backend, project.project_id), timeout=120, what="catch-up")

    last = status["rounds"][-1]
    assert last["status"] == "done" and last["n_labeled_tasks"] == 6
    assert last["n_embedded"] == 0  # the restarted worker reuses the embeddings on disk
    assert_queue_is_complete(project, status)
    if persistent:  # the history survived: it starts with the rounds from before the outage
        assert status["rounds"][: len(before["rounds"])] == before["rounds"]
    else:  # the history went with the data: only rounds run after the restart remain
        assert all(r["started_at"] >= restarted_at for r in status["rounds"])
    server.stop()


def _caught_up(backend: BackendProcesses, project_id: int) -> dict | None:
    try:
        status = backend_status(backend.url, project_id)
    except requests.HTTPError:
        return None
    idle = not any(status["jobs"].values()) and not status["behind"]
    return status if idle and status["rounds"] and status["rounds"][-1]["status"] == "done" else None


def test_redis_server_helper_stops_and_starts(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, persistent=True)
    server.start()
    redis.Redis(port=server.port).set("k", "v")
    server.stop()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=server.port, socket_connect_timeout=1).ping()
    server.start()
    assert redis.Redis(port=server.port).get("k") == b"v"
    server.stop()
