"""ALFAMIX_TRAINING=projection end to end: every round trains a 256-d projection with its head,
the version stores it, /predict serves it, and the status page says which mode each version used."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from backend.state.files import FileProjectStore
from devtools.backend_process import BackendProcesses
from devtools.images import write_mnist_pngs
from devtools.label_studio import LabelStudioServer
from devtools.project import DIGITS, digits_project, pushed_and_served, wait_until_idle
from model.head import PROJECTION_DIM

N_TASKS = 30
N_LABELS = 4
QUEUE_HEAD = 6


@pytest.fixture
def backend(label_studio: LabelStudioServer, tmp_path: Path) -> Iterator[BackendProcesses]:
    env = {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.api_key,
        "ALFAMIX_TRAINING": "projection",
        "ALFAMIX_BATCH_SIZE": "5",
        "ALFAMIX_QUEUE_HEAD": str(QUEUE_HEAD),
    }
    with BackendProcesses(tmp_path, env, workers=0) as processes:
        yield processes


def test_projection_rounds_store_serve_and_show_their_mode(
    backend: BackendProcesses, label_studio: LabelStudioServer, tmp_path: Path
) -> None:
    files = write_mnist_pngs(tmp_path / "digits", N_TASKS, random_state=5)
    project, truth = digits_project(label_studio, "training projection", files)
    project.connect(backend.url)
    wait_until_idle(backend.url, project.project_id)
    for _ in range(N_LABELS):
        project.label_next(truth, 1)
        status = wait_until_idle(backend.url, project.project_id)

    rounds = [r for r in status["rounds"] if r["status"] == "done"]
    assert status["training"] == "projection" and len(rounds) == N_LABELS + 1
    assert {r["training"] for r in rounds} == {"projection"} and rounds[-1]["n_labeled_tasks"] == N_LABELS
    live = status["live_model_version"]
    meta = FileProjectStore(tmp_path / "model", project.project_id).load_meta(live)
    assert meta is not None
    assert (meta["training"], meta["head"]) == ("projection", {"kind": "mlp", "hidden_dim": PROJECTION_DIM})

    # /predict loads the stored projection and head: on the queue's front it pre-selects the
    # class the round pushed to Label Studio for those tasks.
    pushed, served, versions = pushed_and_served(project, backend.url, live, DIGITS)
    assert len(pushed) == QUEUE_HEAD
    assert versions == {live}
    assert served == pushed

    page = requests.get(f"{backend.url}/projects/{project.project_id}", timeout=30).text
    assert '<dd id="training">projection</dd>' in page
    assert page.count("<td>alfamix</td><td>projection</td>") == N_LABELS + 1
