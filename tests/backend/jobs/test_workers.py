"""A real RQ worker says which device it runs on; /health lists the live workers and their devices."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from fastapi.testclient import TestClient
from redis import Redis

from backend.http.app import create_app
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
