"""ALFAMIX_STRATEGY end to end: a baseline orders the queue Label Studio serves, and every version says which."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devtools.backend_process import BackendProcesses
from devtools.images import write_mnist_pngs
from devtools.label_studio import LabelStudioServer
from devtools.project import digits_project, wait_until_idle

N_TASKS = 30
N_LABELS = 4


@pytest.fixture
def backend(label_studio: LabelStudioServer, tmp_path: Path) -> Iterator[BackendProcesses]:
    env = {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.api_key,
        "ALFAMIX_STRATEGY": "margin",
        "ALFAMIX_BATCH_SIZE": "5",
    }
    with BackendProcesses(tmp_path, env, workers=0) as processes:
        yield processes


def test_a_margin_queue_is_served_and_shown_as_margin(
    backend: BackendProcesses, label_studio: LabelStudioServer, tmp_path: Path
) -> None:
    files = write_mnist_pngs(tmp_path / "digits", N_TASKS, random_state=3)
    project, truth = digits_project(label_studio, "strategy margin", files)
    project.connect(backend.url)
    wait_until_idle(backend.url, project.project_id)  # the cold-start round: random order, no model yet

    for _ in range(N_LABELS):
        project.label_next(truth, 1)
        status = wait_until_idle(backend.url, project.project_id)

    rounds = [r for r in status["rounds"] if r["status"] == "done"]
    assert status["strategy"] == "margin" and len(rounds) == N_LABELS + 1
    assert {(r["strategy"], r["batch_kind"], r["batch_event"]) for r in rounds} == {("margin", "margin", "requeried")}
    assert rounds[-1]["n_labeled_tasks"] == N_LABELS
    # Label Studio serves the head of the margin queue: the task the live model is least sure of.
    served = project.next_task()
    assert served["id"] == rounds[-1]["queue_head"][0]
    page = requests.get(f"{backend.url}/projects/{project.project_id}", timeout=30).text
    assert '<dd id="strategy">margin</dd>' in page and "<td>margin</td><td>head</td><td>margin, requeried</td>" in page
