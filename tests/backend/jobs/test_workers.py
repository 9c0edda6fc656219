"""Real RQ workers: each says which device it runs on (/health lists them), and jobs queued under the
names of versions before 0.2 still run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from rq import Queue, SimpleWorker

from backend.http.app import create_app
from backend.jobs import runner
from backend.jobs.dispatch import RQ_QUEUE
from backend.ml_backend import ALFAMixBackend
from backend.settings import Settings

T = TypeVar("T")
DEADLINE = 60.0  # seconds; reached only when the test is about to fail


def wait_for(check: Callable[[], T | None], what: str) -> T:
    deadline = time.monotonic() + DEADLINE
    while (value := check()) is None:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


def test_health_lists_a_running_worker_with_its_device_until_it_stops(redis_url: str, tmp_path: Path) -> None:
    client = TestClient(create_app(ALFAMixBackend.from_settings(Settings(redis_url=redis_url, model_dir=tmp_path))))
    assert client.get("/health").json()["workers"] == []
    env = {**os.environ, "REDIS_URL": redis_url, "MODEL_DIR": str(tmp_path), "ALFAMIX_DEVICE": "auto"}
    worker = subprocess.Popen([sys.executable, "-m", "backend.jobs.worker"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        name = f"{os.uname().nodename}:{worker.pid}"
        workers = wait_for(lambda: client.get("/health").json()["workers"] or None, "the worker to register")
        assert workers == [{"name": name, "device": "cpu"}]
        # Listening: RQ's signal handlers are in place, so SIGTERM is a warm shutdown that unregisters.
        connection = Redis.from_url(redis_url)
        wait_for(lambda: connection.hget(f"rq:worker:{name}", "state") == b"idle" or None, "the worker to listen")
    finally:
        worker.terminate()  # RQ's warm shutdown: the worker leaves its registry
        _, log = worker.communicate(timeout=DEADLINE)
    assert "embeds on the CPU (ALFAMIX_DEVICE=cuda refuses instead)" in log
    assert "takes jobs from queue 'alfamix' on cpu" in log
    assert client.get("/health").json()["workers"] == []


def test_a_job_queued_under_its_name_before_0_2_runs_in_todays_worker(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"LABEL_STUDIO_URL": "http://ls:8080", "LABEL_STUDIO_API_KEY": "k" * 40}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MODEL_DIR", str(tmp_path))
    monkeypatch.delenv("BASIC_AUTH_USER", raising=False)
    monkeypatch.setattr(runner, "_worker_context", None)
    connection = Redis.from_url(redis_url)
    job = Queue(RQ_QUEUE, connection=connection).enqueue("backend.jobs.rq_secure_webhooks", 7)

    SimpleWorker([RQ_QUEUE], connection=connection).work(burst=True)

    assert job.get_status(refresh=True) == "finished"
    assert job.return_value() == {"status": "skipped", "reason": "basic auth is off"}
