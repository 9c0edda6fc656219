"""Events besides submits, bad input, several projects and a restart, against a real Label Studio.

One embedded backend serves two projects: a single-label one with a broken and a missing
image, and a multi-label one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools.backend_process import BackendProcesses
from devtools.images import import_images, write_mnist_pngs
from devtools.label_studio import LabelStudioServer
from devtools.project import DIGITS, Project, choices_config, wait_until_idle

N_IMAGES = 60
PARITY = ["even", "odd", "small"]  # multi-label: a digit < 5 is also "small"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, int]]:
    folder = tmp_path_factory.mktemp("events-images")
    written = write_mnist_pngs(folder, N_IMAGES, random_state=1)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return written


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("events-backend")


def start_backend(label_studio: LabelStudioServer, root: Path) -> BackendProcesses:
    env = {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.api_key,
        "ALFAMIX_BATCH_SIZE": "5",
        "ALFAMIX_QUEUE_HEAD": "1000",  # the whole pool: the tests check that every unlabeled task is ranked
    }
    return BackendProcesses(root, env).start()


@pytest.fixture(scope="module")
def backend(label_studio: LabelStudioServer, model_dir: Path) -> Iterator[BackendProcesses]:
    processes = start_backend(label_studio, model_dir)
    yield processes
    processes.stop()


@pytest.fixture(scope="module")
def digits(label_studio: LabelStudioServer, backend: BackendProcesses, files: list[tuple[Path, int]]) -> dict[str, Any]:
    project = Project.create(label_studio, "digits with broken images", choices_config(DIGITS))
    names = import_images(
        label_studio.url,
        label_studio.api_key,
        project.project_id,
        [path for path, _ in files] + [files[0][0].parent / "corrupt.png"],
    )
    by_name = {path.name: label for path, label in files}
    truth = {task_id: by_name[name] for task_id, name in names.items() if name in by_name}
    corrupt = next(task_id for task_id, name in names.items() if name == "corrupt.png")
    missing = project.api(
        "POST",
        f"/api/projects/{project.project_id}/import",
        params={"return_task_ids": "true"},
        json=[{"image": f"/data/upload/{project.project_id}/no-such-file.png"}],
    )["task_ids"][0]
    ml_id = project.connect(backend.url)
    wait_until_idle(backend.url, project.project_id)
    return {"project": project, "truth": truth, "corrupt": corrupt, "missing": missing, "ml_id": ml_id}


def test_broken_images_and_unknown_labels_skip_one_task_each_and_the_round_completes(
    digits: dict[str, Any], backend: BackendProcesses
) -> None:
    project: Project = digits["project"]
    truth = digits["truth"]
    labeled = project.label_next(truth, 6)
    # An annotation naming a label that is not in the config (the API accepts it).
    stray = next(t for t in truth if t not in labeled)
    project.submit(stray, ["banana"])
    status = wait_until_idle(backend.url, project.project_id)

    last = status["rounds"][-1]
    assert last["status"] == "done"
    assert last["n_labeled_tasks"] == 6
    assert set(last["skipped_tasks"]) == {str(digits["corrupt"]), str(digits["missing"])}
    assert "not a decodable image" in last["skipped_tasks"][str(digits["corrupt"])]
    # Label Studio 1.23.2 answers a missing upload with a 500, not a 404.
    assert "no-such-file.png answered HTTP 500" in last["skipped_tasks"][str(digits["missing"])]
    assert last["rejected_annotations"] == {str(stray): "labels ['banana'] are not in the label config"}
    assert f"task {stray}: annotation" in backend.log() and "'banana'" in backend.log()

    live = status["live_model_version"]
    with_live = {t["id"] for t in project.tasks() if any(p["model_version"] == live for p in t["predictions"])}
    # Every task with an image and no usable label is ranked, the stray-labeled one included.
    assert with_live == set(truth) - set(labeled)


def test_new_tasks_start_training_and_deleted_annotations(
    digits: dict[str, Any], backend: BackendProcesses, label_studio: LabelStudioServer, files: list[tuple[Path, int]]
) -> None:
    project: Project = digits["project"]
    before = wait_until_idle(backend.url, project.project_id)
    # New tasks (TASKS_CREATED) are embedded in the background, ahead of the next round.
    import_images(label_studio.url, label_studio.api_key, project.project_id, [p for p, _ in files[-2:]])
    wait_until_idle(backend.url, project.project_id)

    project.api("POST", f"/api/ml/{digits['ml_id']}/train", json={})
    after_train = wait_until_idle(backend.url, project.project_id)
    assert len(after_train["rounds"]) == len(before["rounds"]) + 1
    assert after_train["live_model_version"] != before["live_model_version"]
    assert after_train["rounds"][-1]["n_embedded"] == 0
    assert after_train["rounds"][-1]["n_unlabeled_tasks"] == before["rounds"][-1]["n_unlabeled_tasks"] + 2

    # A task with a usable label: deleting the stray "banana" annotation would change no count.
    task = next(t for t in project.tasks() if t["annotations"] and _choices(t["annotations"][0]) != ["banana"])
    project.api("DELETE", f"/api/annotations/{task['annotations'][0]['id']}")
    after_delete = wait_until_idle(backend.url, project.project_id)
    last = after_delete["rounds"][-1]
    assert len(after_delete["rounds"]) == len(after_train["rounds"]) + 1
    assert last["n_labeled_tasks"] == after_train["rounds"][-1]["n_labeled_tasks"] - 1
    refreshed = next(t for t in project.tasks() if t["id"] == task["id"])
    assert [p["model_version"] for p in refreshed["predictions"]].count(last["model_version"]) == 1


def _choices(annotation: dict[str, Any]) -> list[str]:
    return [c for r in annotation["result"] for c in r["value"]["choices"]]


def test_multi_label_project_on_the_same_backend_is_isolated(
    label_studio: LabelStudioServer, backend: BackendProcesses, digits: dict[str, Any], files: list[tuple[Path, int]]
) -> None:
    digits_live = wait_until_idle(backend.url, digits["project"].project_id)["live_model_version"]
    project = Project.create(label_studio, "parity, multi-label", choices_config(PARITY, choice="multiple"))
    names = import_images(label_studio.url, label_studio.api_key, project.project_id, [p for p, _ in files[:30]])
    by_name = {path.name: label for path, label in files}
    project.connect(backend.url)
    wait_until_idle(backend.url, project.project_id)
    for _ in range(8):
        task = project.next_task()
        digit = by_name[names[task["id"]]]
        project.submit(task["id"], ["even" if digit % 2 == 0 else "odd", *(["small"] if digit < 5 else [])])
    status = wait_until_idle(backend.url, project.project_id)

    assert status["rounds"][-1]["status"] == "done" and status["rounds"][-1]["n_labeled_tasks"] == 8
    live = status["live_model_version"]
    predicted = [
        p["result"][0]["value"]["choices"]
        for t in project.tasks()
        for p in t["predictions"]
        if p["model_version"] == live
    ]
    assert len(predicted) == 30 - 8
    assert all(choice and set(choice) <= set(PARITY) for choice in predicted)
    # The other project's queue did not move.
    assert wait_until_idle(backend.url, digits["project"].project_id)["live_model_version"] == digits_live
    assert digits["project"].settings()["model_version"] == digits_live


def test_unsupported_label_config_is_refused_at_connect_and_the_reason_is_logged(
    label_studio: LabelStudioServer, backend: BackendProcesses
) -> None:
    config = (
        '<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
        '<Label value="cat"/></RectangleLabels></View>'
    )
    project = Project.create(label_studio, "boxes", config)
    answer = label_studio.session().post(
        f"{label_studio.url}/api/ml",
        timeout=30,
        json={"project": project.project_id, "url": backend.url, "title": "ALFA-Mix"},
    )
    # Label Studio 1.23.2 shows only the status line of a refused /setup, not the body.
    assert answer.status_code == 400
    assert "400 Client Error: Bad Request for url" in answer.text and "/setup" in answer.text
    reason = "remove the other control tags: <RectangleLabels name='box'>"
    assert f"project {project.project_id}: label config refused: " in backend.log()
    assert reason in backend.log()
    direct = requests.post(
        f"{backend.url}/setup", timeout=5, json={"project": f"{project.project_id}.0", "schema": config}
    )
    assert direct.status_code == 400 and reason in direct.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/webhook", b"{not json", 400, "the request body is not valid JSON"),
        ("/webhook", b"[1, 2]", 400, "the request body must be a JSON object"),
        (
            "/webhook",
            json.dumps({"action": "SOMETHING_ELSE", "project": {"id": 1}}).encode(),
            400,
            "unknown webhook action 'SOMETHING_ELSE'",
        ),
        ("/webhook", json.dumps({"action": "ANNOTATION_CREATED"}).encode(), 400, "the request names no project"),
        (
            "/webhook",
            json.dumps({"action": "START_TRAINING", "project": {"id": "abc"}}).encode(),
            400,
            "project 'abc' is not a Label Studio project id",
        ),
        (
            "/setup",
            json.dumps({"project": "3.1", "schema": "<View>"}).encode(),
            400,
            "the label config is not valid XML",
        ),
        (
            "/predict",
            json.dumps({"tasks": [], "label_config": "<View/>"}).encode(),
            422,
            "invalid request: project: Field required",
        ),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(
    backend: BackendProcesses, path: str, body: bytes, status: int, message: str
) -> None:
    answer = requests.post(f"{backend.url}{path}", data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert answer.status_code == status
    assert message in answer.json()["error"]


def test_restart_keeps_the_model_and_the_embeddings(
    label_studio: LabelStudioServer, backend: BackendProcesses, digits: dict[str, Any], model_dir: Path
) -> None:
    project: Project = digits["project"]
    live = wait_until_idle(backend.url, project.project_id)["live_model_version"]
    backend.stop()
    restarted = start_backend(label_studio, model_dir)
    try:
        setup = requests.post(
            f"{restarted.url}/setup",
            timeout=5,
            json={"project": f"{project.project_id}.0", "schema": project.settings()["label_config"]},
        ).json()
        assert setup == {"model_version": live}
        # The project still points at the old URL; START_TRAINING is what the new process would receive.
        requests.post(
            f"{restarted.url}/webhook",
            timeout=5,
            json={"action": "START_TRAINING", "project": {"id": project.project_id}},
        ).raise_for_status()
        last = wait_until_idle(restarted.url, project.project_id)["rounds"][-1]
        assert last["status"] == "done" and last["n_embedded"] == 0
    finally:
        restarted.stop()
