"""The whole loop against a real Label Studio 1.23.2: connect, label through /next, rounds reorder the queue.

Runs twice: with Redis + an RQ worker process, basic auth on and a Personal Access Token,
and with the embedded default (jobs in a thread of the server, no auth, a legacy token).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from devtools.backend_process import NO_CATCH_UP, BackendProcesses
from devtools.images import import_images, write_mnist_pngs
from devtools.label_studio import LabelStudioServer
from devtools.project import (
    DIGITS,
    Project,
    backend_status,
    choices_config,
    wait_for,
    wait_for_labels,
    wait_until_idle,
)

logger = logging.getLogger(__name__)

N_TASKS = 300
BATCH = 10
N_BATCHES = 5
QUEUE_HEAD = 40  # predictions a round writes; the rest get theirs from /predict when opened
AUTH = ("alfamix", "s3cret-e2e-pass")
AUDIT_FRACTION = 0.2  # in the RQ run: 2 of every batch of 10 are drawn at random


@pytest.fixture(scope="module")
def mnist_files(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, int]]:
    return write_mnist_pngs(tmp_path_factory.mktemp("mnist"), N_TASKS, random_state=0)


@pytest.fixture(params=["rq", "embedded"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend(
    mode: str, label_studio: LabelStudioServer, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[BackendProcesses]:
    env = {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.api_key,
        "ALFAMIX_BATCH_SIZE": str(BATCH),
        "ALFAMIX_QUEUE_HEAD": str(QUEUE_HEAD),
        "LOG_LEVEL": "INFO",
    }
    if mode == "rq":
        # This run also authenticates with a Personal Access Token, the default in Label Studio 1.23.
        env |= {
            "REDIS_URL": request.getfixturevalue("empty_redis_url"),  # asked for here: the embedded run needs no Redis
            "BASIC_AUTH_USER": AUTH[0],
            "BASIC_AUTH_PASS": AUTH[1],
            "LABEL_STUDIO_API_KEY": label_studio.personal_access_token(),
            "ALFAMIX_AUDIT_FRACTION": str(AUDIT_FRACTION),
            **NO_CATCH_UP,  # no round but those the labels ask for, while the checks read the queue
        }
    with BackendProcesses(tmp_path, env, workers=1 if mode == "rq" else 0) as processes:
        yield processes


def test_labeling_through_next_follows_the_alfamix_queue(
    mode: str, backend: BackendProcesses, label_studio: LabelStudioServer, mnist_files: list[tuple[Path, int]]
) -> None:
    auth = AUTH if mode == "rq" else None
    project = Project.create(label_studio, f"mnist {mode}", choices_config(DIGITS))
    truth_by_file = {path.name: label for path, label in mnist_files}
    truth = {
        task_id: truth_by_file[name]
        for task_id, name in import_images(
            label_studio.url, label_studio.api_key, project.project_id, [path for path, _ in mnist_files]
        ).items()
    }
    assert len(truth) == N_TASKS

    project.connect(backend.url, auth)
    if auth:
        # Label Studio creates the webhook without credentials; the backend must add them.
        expected = "Basic " + base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode()).decode()
        wait_for(
            lambda: [h for h in project.webhooks() if (h.get("headers") or {}).get("Authorization") == expected],
            timeout=60,
            what="the webhook to carry the backend's basic auth",
        )
    # /setup started the embedding of the existing tasks; its first tasks asked for the cold-start round.
    status = wait_until_idle(backend.url, project.project_id, auth)
    _check_cold_start(project, status)

    labeled: dict[int, int] = {}
    for batch in range(N_BATCHES):
        for _ in range(BATCH):
            task = project.next_task()
            assert task["id"] not in labeled
            project.submit(task["id"], [str(truth[task["id"]])])
            labeled[task["id"]] = truth[task["id"]]
        status = wait_for_labels(backend.url, project.project_id, len(labeled), auth)
        accuracy = _check_round(project, backend, status, labeled, truth, auth)
        logger.info(
            "%s: batch %d: %d labels, accuracy on unlabeled tasks %.3f, %d rounds so far",
            mode,
            batch + 1,
            len(labeled),
            accuracy,
            len(status["rounds"]),
        )

    # Chance is 0.1 with ten digits.
    assert accuracy >= 0.5, f"accuracy {accuracy:.3f} on unlabeled tasks after {len(labeled)} labels"
    assert all(r["status"] == "done" for r in status["rounds"]), status["rounds"]
    assert status["rounds"][-1]["n_labeled_tasks"] == len(labeled)
    assert status["rounds"][-1]["n_prelabeled"] > 0
    # The owner's view: counts, a learning curve over the batches, the page and its plot.
    assert status["counts"] == {
        "tasks": N_TASKS,
        "labeled": len(labeled),
        "ranked": N_TASKS - len(labeled),
        "skipped": 0,
    }
    curve = status["learning_curve"]
    judged = sum(r.get("n_prelabeled", 0) for r in status["rounds"] if r["status"] == "done")
    assert curve and sum(p["n_judged"] for p in curve) == judged  # every judged label is on the curve, once
    assert curve == sorted(curve, key=lambda p: p["n_labels"])
    assert all(0.0 <= p["low"] <= p["accuracy"] <= p["high"] <= 1.0 for p in curve)
    audited = sum(r.get("n_audited", 0) for r in status["rounds"] if r["status"] == "done")
    if mode == "rq":  # every audit task labeled judged the version that pre-labeled it
        assert 0 < audited <= 50 and status["pool_accuracy"]["n_judged"] == audited
    else:
        assert audited == 0 and status["pool_accuracy"] is None
    page = requests.get(f"{backend.url}/projects/{project.project_id}", auth=auth, timeout=30)
    assert page.status_code == 200 and status["live_model_version"] in page.text
    png = requests.get(f"{backend.url}/projects/{project.project_id}/learning-curve.png", auth=auth, timeout=30)
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
    # No secret reaches a log line, whichever process wrote it.
    secrets = [label_studio.api_key, label_studio.personal_access_token(), AUTH[1]]
    for name in backend.processes:
        log = backend.log(name)
        assert log and not [s for s in secrets if s in log], name


def _check_cold_start(project: Project, status: dict[str, Any]) -> None:
    """Before any label, a queue of diverse representatives is live and /next serves its head."""
    # One round, or more when Label Studio called /setup again meanwhile; a later one keeps the batch.
    records = status["rounds"]
    assert records and all((r["status"], r["n_labeled_tasks"]) == ("done", 0) for r in records)
    assert [r["batch_event"] for r in records] == ["new"] + ["kept"] * (len(records) - 1)
    record = records[-1]
    assert (record["batch_kind"], record["n_batch"], record["n_unlabeled_tasks"]) == ("diversity", BATCH, N_TASKS)
    assert project.settings()["model_version"] == status["live_model_version"] == record["model_version"]
    first = project.next_task()
    assert first["id"] == record["queue_head"][0]
    # No class is pre-selected: there is no model yet, only an order.
    shown = [p for p in first["predictions"] if p["model_version"] == record["model_version"]]
    assert [p["result"] for p in shown] == [[]] and shown[0]["score"] == 0.0


def _check_round(
    project: Project,
    backend: BackendProcesses,
    status: dict[str, Any],
    labeled: dict[int, int],
    truth: dict[int, int],
    auth: tuple[str, str] | None,
) -> float:
    """The exact state one finished round must leave; returns the live model's accuracy on unlabeled tasks."""
    live = status["live_model_version"]
    last = status["rounds"][-1]
    assert last["status"] == "done" and last["model_version"] == live
    assert last["n_labeled_tasks"] == len(labeled)
    settings = project.settings()
    assert settings["model_version"] == live
    assert settings["sampling"] == "Uncertainty sampling"

    tasks = project.tasks()
    unlabeled = [t for t in tasks if t["id"] not in labeled]
    assert len(unlabeled) == N_TASKS - len(labeled)
    # The round wrote the front of its queue only: one prediction on each of QUEUE_HEAD tasks.
    scores: dict[int, float] = {}
    for task in unlabeled:
        live_predictions = [p for p in task["predictions"] if p["model_version"] == live]
        assert len(live_predictions) <= 1, (task["id"], task["predictions"])
        if live_predictions:
            choice = live_predictions[0]["result"][0]["value"]["choices"]
            assert len(choice) == 1 and choice[0] in DIGITS
            scores[task["id"]] = live_predictions[0]["score"]
    assert len(scores) == last["n_predictions"] == QUEUE_HEAD
    predicted = _predict(project, backend, unlabeled, settings["label_config"], auth)
    assert set(predicted.values()) <= set(range(10)) and len(predicted) == len(unlabeled)
    # Only this round's version and the one before it are kept.
    versions = {p["model_version"] for t in tasks for p in t["predictions"]}
    assert live in versions and len(versions) <= 2, versions

    # "Label All Tasks" now serves the lowest score, which is the head of the backend's queue.
    head = last["queue_head"][0]
    assert scores[head] == min(scores.values()) == 0.0
    next_task = project.next_task()
    assert next_task["id"] == head
    # ... with the model's class pre-selected.
    shown = [p for p in next_task["predictions"] if p["model_version"] == live]
    assert shown and shown[0]["result"][0]["value"]["choices"] == [str(predicted[head])]

    # Opening a task without a prediction (in the Data Manager) gets one from /predict, of the live version.
    bare = next(t for t in unlabeled if not t["predictions"])
    opened = project.api("GET", f"/api/tasks/{bare['id']}")
    assert [(p["model_version"], p["result"][0]["value"]["choices"]) for p in opened["predictions"]] == [
        (live, [str(predicted[bare["id"]])])
    ]
    return float(np.mean([predicted[t] == truth[t] for t in predicted]))


def _predict(
    project: Project,
    backend: BackendProcesses,
    tasks: list[dict[str, Any]],
    label_config: str,
    auth: tuple[str, str] | None,
) -> dict[int, int]:
    """The live model's class for each task, from /predict as Label Studio would ask."""
    answer = requests.post(
        f"{backend.url}/predict",
        auth=auth,
        timeout=60,
        json={
            "tasks": [{"id": t["id"], "data": t["data"]} for t in tasks],
            "project": f"{project.project_id}.0",
            "label_config": label_config,
        },
    ).json()
    return {t["id"]: int(r["result"][0]["value"]["choices"][0]) for t, r in zip(tasks, answer["results"], strict=True)}


def test_status_of_unknown_project_is_empty(backend: BackendProcesses, mode: str) -> None:
    status = backend_status(backend.url, 999_999, AUTH if mode == "rq" else None)
    assert status["live_model_version"] is None and status["rounds"] == []
