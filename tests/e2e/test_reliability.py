"""Failures a deployment meets, against a real Label Studio, Redis and worker processes.

- a worker SIGKILLed while it embeds, while it trains, and while it pushes predictions;
- Label Studio answering 503 during a round;
- a storm of 1,000 webhook events in 10 s for one project, another project interleaved.
Each test checks what must hold afterwards with exact values. How fast the storm is answered
is measured by bench/bench_webhook_storm.py, not asserted here.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from devtools.backend_process import BackendProcesses
from devtools.images import write_mnist_pngs
from devtools.label_studio import LabelStudioServer
from devtools.project import Project, backend_status, digits_project, wait_for, wait_until_idle
from devtools.proxy import LabelStudioProxy
from devtools.webhook_storm import send_storm

logger = logging.getLogger(__name__)

LOCK_SECONDS = 4
# Rounds push predictions for every unlabeled task here, so that assert_queue_is_complete
# sees a half-pushed version on any task.
WHOLE_POOL = "1000"


@pytest.fixture(scope="module")
def pngs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, int]]:
    return write_mnist_pngs(tmp_path_factory.mktemp("reliability"), 200, random_state=4)


def assert_queue_is_complete(project: Project, status: dict[str, Any]) -> None:
    """The project serves the live version, every unlabeled task has exactly one prediction of it,
    and no task carries two predictions of any one version."""
    live = status["live_model_version"]
    assert project.settings()["model_version"] == live
    tasks = project.tasks()
    for task in tasks:
        per_version = Counter(p["model_version"] for p in task["predictions"])
        assert all(count == 1 for count in per_version.values()), (task["id"], per_version)
        if not task["annotations"]:
            assert per_version[live] == 1, task["id"]
    assert len({p["model_version"] for t in tasks for p in t["predictions"]}) <= 2


def wait_for_stage(backend: BackendProcesses, project_id: int, name: str, timeout: float = 120) -> None:
    """Polls the project's status until its running job is in stage ``name`` with work left in it
    (``done < total`` where the stage counts), so that a signal sent next lands inside that stage."""
    seen = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = backend_status(backend.url, project_id)["stage"]
        if seen and seen["name"] == name and (seen["total"] is None or seen["done"] < seen["total"]):
            return
        time.sleep(0.02)
    raise AssertionError(f"project {project_id} not in stage {name!r} with work left after {timeout} s; last: {seen}")


def kill(backend: BackendProcesses, name: str) -> None:
    process = backend.processes[name]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_a_worker_killed_mid_round_leaves_a_complete_queue_after_another_worker_catches_up(
    label_studio: LabelStudioServer, pngs: list[tuple[Path, int]], tmp_path: Path, empty_redis_url: str
) -> None:
    project, truth = digits_project(label_studio, "killed workers", pngs)
    with LabelStudioProxy(label_studio.url) as proxy:
        env = {
            "ALFAMIX_QUEUE_HEAD": WHOLE_POOL,
            "LABEL_STUDIO_URL": proxy.url,
            "LABEL_STUDIO_API_KEY": label_studio.api_key,
            "REDIS_URL": empty_redis_url,
            "ALFAMIX_LOCK_SECONDS": str(LOCK_SECONDS),
            "ALFAMIX_RECONCILE_SECONDS": "1",
            "ALFAMIX_BATCH_SIZE": "10",
        }
        with BackendProcesses(tmp_path, env) as backend:
            backend.start_worker("a", {"MODEL_DIR": str(tmp_path / "a")})
            project.connect(backend.url)
            wait_until_idle(backend.url, project.project_id, timeout=300)  # worker a embeds everything

            # 1. Killed while embedding: a fresh worker b has no cache, so its round embeds for a while.
            kill(backend, "a")
            backend.start_worker("b", {"MODEL_DIR": str(tmp_path / "b")})
            downloads = ("GET", f"/data/upload/{project.project_id}/")
            downloaded_before = proxy.received(*downloads)
            project.label_next(truth, 5)
            wait_for_stage(backend, project.project_id, "embedding")
            # b fetches the images it embeds through the proxy: once one went through, b is at the images.
            wait_for(lambda: proxy.received(*downloads) > downloaded_before, timeout=120, what="an image download")
            kill(backend, "b")
            killed_at = time.monotonic()
            backend.start_worker("c", {"MODEL_DIR": str(tmp_path / "a")})
            status = wait_for(lambda: _caught_up(backend, project.project_id), timeout=120, what="catch-up")
            recovered = time.monotonic() - killed_at
            assert status["rounds"][-1]["status"] == "done" and status["rounds"][-1]["n_labeled_tasks"] == 5
            assert_queue_is_complete(project, status)
            assert recovered >= LOCK_SECONDS - 1  # the dead worker's lock had to expire first

            # 2. Killed while pushing predictions (Label Studio made slow to receive them).
            before = status["live_model_version"]
            imports = ("POST", f"/api/projects/{project.project_id}/import/predictions")
            proxy.delays[imports] = 3.0
            imported_before = proxy.received(*imports)
            project.label_next(truth, 5)
            wait_for_stage(backend, project.project_id, "pushing")
            # Killed while its predictions are held up in the proxy, before Label Studio answers.
            wait_for(lambda: proxy.received(*imports) > imported_before, timeout=120, what="the predictions' import")
            kill(backend, "c")
            assert project.settings()["model_version"] == before  # never a half-pushed version
            proxy.delays.clear()
            backend.start_worker("d", {"MODEL_DIR": str(tmp_path / "a")})
            status = wait_for(lambda: _caught_up(backend, project.project_id), timeout=120, what="catch-up")
            assert status["rounds"][-1]["n_labeled_tasks"] == 10 and status["live_model_version"] != before
            assert_queue_is_complete(project, status)

            # 3. Killed while training (a worker told to train its head for long enough to be caught at it).
            before = status["live_model_version"]
            backend.stop_process("d")
            backend.start_worker("e", {"MODEL_DIR": str(tmp_path / "a"), "ALFAMIX_HEAD_EPOCHS": "200000"})
            project.label_next(truth, 5)
            wait_for_stage(backend, project.project_id, "training")
            kill(backend, "e")
            assert project.settings()["model_version"] == before
            backend.start_worker("f", {"MODEL_DIR": str(tmp_path / "a")})
            status = wait_for(lambda: _caught_up(backend, project.project_id), timeout=120, what="catch-up")
            assert status["rounds"][-1]["n_labeled_tasks"] == 15 and status["live_model_version"] != before
            assert_queue_is_complete(project, status)
    logger.info("killed while embedding: caught up %.1f s after the kill (lock %d s)", recovered, LOCK_SECONDS)


def _caught_up(backend: BackendProcesses, project_id: int) -> dict[str, Any] | None:
    status = backend_status(backend.url, project_id)
    idle = not any(status["jobs"].values()) and not status["behind"]
    return status if idle and status["rounds"] and status["rounds"][-1]["status"] == "done" else None


def test_label_studio_down_during_a_round_fails_it_cleanly_and_it_is_retried(
    label_studio: LabelStudioServer, pngs: list[tuple[Path, int]], tmp_path: Path
) -> None:
    project, truth = digits_project(label_studio, "label studio down", pngs[:60])
    with LabelStudioProxy(label_studio.url) as proxy:
        env = {
            "ALFAMIX_QUEUE_HEAD": WHOLE_POOL,
            "LABEL_STUDIO_URL": proxy.url,
            "LABEL_STUDIO_API_KEY": label_studio.api_key,
            "ALFAMIX_RECONCILE_SECONDS": "2",
        }
        with BackendProcesses(tmp_path, env) as backend:
            project.connect(backend.url)
            wait_until_idle(backend.url, project.project_id)
            project.label_next(truth, 4)
            live = wait_until_idle(backend.url, project.project_id)["live_model_version"]

            proxy.down = True
            project.label_next(truth, 4)  # the webhooks still arrive: only the backend's view of Label Studio is down
            failed = wait_for(
                lambda: _last_round(backend, project.project_id, "failed"), timeout=120, what="a failed round"
            )
            assert "answered HTTP 503" in failed["error"]
            assert project.settings()["model_version"] == live  # the previous version stays in force
            retries = proxy.requests_while_down
            proxy.down = False
            status = wait_for(lambda: _caught_up(backend, project.project_id), timeout=120, what="catch-up")
    assert status["rounds"][-1]["n_labeled_tasks"] == 8
    assert retries >= 4  # the first call and its 3 retries, at least
    assert_queue_is_complete(project, status)


def _last_round(backend: BackendProcesses, project_id: int, status: str) -> dict[str, Any] | None:
    rounds = backend_status(backend.url, project_id)["rounds"]
    return rounds[-1] if rounds and rounds[-1]["status"] == status else None


def test_a_storm_of_webhooks_is_answered_and_coalesced(
    label_studio: LabelStudioServer, pngs: list[tuple[Path, int]], tmp_path: Path, empty_redis_url: str
) -> None:
    project, truth = digits_project(label_studio, "storm", pngs[:80])
    other, other_truth = digits_project(label_studio, "storm neighbour", pngs[80:120])
    env = {
        "ALFAMIX_QUEUE_HEAD": WHOLE_POOL,
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.api_key,
        "REDIS_URL": empty_redis_url,
    }
    with BackendProcesses(tmp_path, env, workers=1) as backend:
        for p in (project, other):
            p.connect(backend.url)
            wait_until_idle(backend.url, p.project_id)
        project.label_next(truth, 6)
        other.label_next(other_truth, 3)
        wait_until_idle(backend.url, project.project_id)
        rounds_before = len(backend_status(backend.url, project.project_id)["rounds"])

        events = 1100  # 100 of them for the other project
        answers = send_storm(
            backend.url,
            [project.project_id] * 10 + [other.project_id],
            events,
            window=10.0,
            threads=16,
            meanwhile=lambda: project.label_next(truth, 4),  # real submits during the storm
        )
        status = wait_for(lambda: _caught_up(backend, project.project_id), timeout=180, what="the storm's rounds")
        wait_for(lambda: _caught_up(backend, other.project_id), timeout=180, what="the neighbour's rounds")

    assert Counter(answer.status_code for answer in answers) == {200: events}
    assert Counter(answer.project_id for answer in answers) == {project.project_id: 1000, other.project_id: 100}
    storm_rounds = status["rounds"][rounds_before:]
    assert all(r["status"] == "done" for r in storm_rounds)
    assert storm_rounds[-1]["n_labeled_tasks"] == 10  # the last round covers the submits made during the storm
    # Coalesced: rounds ran one after another, so their number is bounded by the storm's length over
    # the shortest round, plus the one pending when the storm ended.
    spans = sorted((r["started_at"], r["finished_at"]) for r in storm_rounds)
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(spans))
    shortest = min(end - start for start, end in spans)
    assert len(storm_rounds) <= (spans[-1][1] - spans[0][0]) / shortest + 2
