"""Workers on several machines share only Redis and Label Studio: any worker runs any round.

Two worker processes with separate MODEL_DIR folders (as on two machines) serve one project:
first alone in turn, then together. Rounds must build on each other's state and never overlap.
The test waits for states (labels received by the backend, the project idle), never for time.
"""

from __future__ import annotations

import itertools
import socket
from pathlib import Path

from devtools.backend_process import NO_CATCH_UP, BackendProcesses
from devtools.images import write_mnist_pngs
from devtools.label_studio import LabelStudioServer
from devtools.project import digits_project, wait_for_label_events, wait_for_labels, wait_until_idle

N_TASKS = 80


def test_two_workers_with_separate_model_dirs_share_one_project(
    label_studio: LabelStudioServer, tmp_path: Path, redis_url: str
) -> None:
    files = write_mnist_pngs(tmp_path / "png", N_TASKS, random_state=2)
    project, truth = digits_project(label_studio, "scale-out", files)
    env = {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.api_key,
        "REDIS_URL": redis_url,
        "ALFAMIX_BATCH_SIZE": "5",
        **NO_CATCH_UP,  # the only rounds are those the labels and the train requests ask for
    }
    host = socket.gethostname()

    with BackendProcesses(tmp_path, env) as backend:
        pid_a = backend.start_worker("worker-a", {"MODEL_DIR": str(tmp_path / "machine-a")})
        ml_id = project.connect(backend.url)
        wait_until_idle(backend.url, project.project_id)
        project.label_next(truth, 8)
        first = wait_for_labels(backend.url, project.project_id, 8)["rounds"]
        assert {r["worker"] for r in first} == {f"{host}:{pid_a}"}
        assert first[-1]["n_labeled_tasks"] == 8  # the version A leaves live was trained on every label
        backend.stop_process("worker-a")

        # Labels submitted while no worker runs wait in Redis; machine B, with no embeddings and no files
        # of the project, then takes the round they asked for: state comes from Redis.
        project.label_next(truth, 8)
        wait_for_label_events(backend.url, 16)
        pid_b = backend.start_worker("worker-b", {"MODEL_DIR": str(tmp_path / "machine-b")})
        second = wait_for_labels(backend.url, project.project_id, 16)["rounds"]
        on_b = second[len(first) :]
        assert on_b and {r["worker"] for r in on_b} == {f"{host}:{pid_b}"}
        assert on_b[0]["n_embedded"] == N_TASKS  # each machine embeds a task once, into its own cache
        assert on_b[0]["n_labeled_tasks"] == 16
        # B's first round judges the 8 new labels against the queue machine A left in Redis, where each
        # of their tasks had a predicted class.
        assert on_b[0]["n_prelabeled"] == 8
        assert int(on_b[0]["model_version"].split("-")[1]) == len(first) + 1
        assert not (tmp_path / "machine-b" / "projects" / str(project.project_id) / "rounds.json").exists()

        # Both machines at once: a burst of submits and START_TRAINING events.
        backend.start_worker("worker-a2", {"MODEL_DIR": str(tmp_path / "machine-a")})
        for _ in range(4):
            project.label_next(truth, 2)
            for _ in range(3):
                project.api("POST", f"/api/ml/{ml_id}/train", json={})
        final = wait_for_labels(backend.url, project.project_id, 24)

    rounds = final["rounds"]
    assert all(r["status"] == "done" for r in rounds), rounds
    assert rounds[-1]["n_labeled_tasks"] == 24
    assert project.settings()["model_version"] == rounds[-1]["model_version"] == final["live_model_version"]
    # Never two rounds of the project at once.
    spans = sorted((r["started_at"], r["finished_at"]) for r in rounds)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), spans
