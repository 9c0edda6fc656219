"""ALFAMIX_TRAINING=finetune end to end, with a real Label Studio: the fourth label starts a
fine-tuning of EfficientNet-Lite0's last block, embed jobs re-embed the pool, the queue moves to
the tuned space, and a restarted backend resumes from the stored weights.

Jobs run in the server's own thread here (no REDIS_URL): the Redis store keeps encoder versions
the same way (tests/backend/state/test_redis_state.py), and every Redis database of the test
suite already has its module (tests/redis_databases.py)."""

from __future__ import annotations

from pathlib import Path

import requests

from backend.state.files import FileProjectStore
from devtools.backend_process import NO_CATCH_UP, BackendProcesses
from devtools.images import write_mnist_pngs
from devtools.label_studio import LabelStudioServer
from devtools.project import DIGITS, digits_project, pushed_and_served, wait_for_labels, wait_until_idle

N_TASKS = 24
EVERY = 4
QUEUE_HEAD = 6


def test_a_fine_tuned_encoder_ranks_the_queue_and_survives_a_restart(
    label_studio: LabelStudioServer, tmp_path: Path
) -> None:
    files = write_mnist_pngs(tmp_path / "digits", N_TASKS, random_state=8)
    project, truth = digits_project(label_studio, "training finetune", files)
    env = {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.api_key,
        "MODEL_DIR": str(tmp_path / "model"),
        "ALFAMIX_TRAINING": "finetune",
        "ALFAMIX_FINETUNE_EVERY": str(EVERY),
        "ALFAMIX_FINETUNE_EPOCHS": "3",
        "ALFAMIX_BATCH_SIZE": "5",
        "ALFAMIX_QUEUE_HEAD": str(QUEUE_HEAD),
        **NO_CATCH_UP,
    }
    (tmp_path / "first").mkdir()
    with BackendProcesses(tmp_path / "first", env) as backend:
        project.connect(backend.url)
        wait_until_idle(backend.url, project.project_id)
        project.label_next(truth, EVERY)
        status = wait_for_labels(backend.url, project.project_id, EVERY)

        rounds = [r for r in status["rounds"] if r["status"] == "done"]
        version = rounds[-1]["encoder_version"]
        assert version is not None and version.startswith("ft1-"), rounds[-1]
        assert [r["encoder_version"] for r in rounds[:-1]] == [None] * (len(rounds) - 1)
        assert rounds[-1]["n_labeled_tasks"] == EVERY and status["encoder_version"] == version
        assert f"encoder {version} fine-tuned on {EVERY} labeled tasks" in backend.log()
        store = FileProjectStore(tmp_path / "model", project.project_id)
        [encoder] = store.encoders()
        assert (encoder["version"], encoder["n_labeled_tasks"], encoder["n_images"]) == (version, EVERY, EVERY)
        live = status["live_model_version"]
        meta = store.load_meta(live)
        assert meta is not None and meta["encoder_key"] == f"efficientnet_lite0-DEFAULT.{version}"
        tuned = store.embeddings(meta["encoder_key"]).load()
        assert len(tuned.task_ids) == N_TASKS  # the whole pool, re-embedded by the tuned encoder

        # /predict reads the live version's tuned space: the classes it pushed to Label Studio.
        pushed, served, versions = pushed_and_served(project, backend.url, live, DIGITS)
        assert len(pushed) == QUEUE_HEAD and versions == {live}
        assert served == pushed
        page = requests.get(f"{backend.url}/projects/{project.project_id}", timeout=30).text
        assert f'<dd id="training">finetune, encoder {version}</dd>' in page

    # A new process on the same port and MODEL_DIR loads the stored weights; one more label is not
    # a fine-tuning yet.
    (tmp_path / "second").mkdir()
    with BackendProcesses(tmp_path / "second", env, port=backend.port) as restarted:
        project.label_next(truth, 1)
        done = [r for r in wait_for_labels(restarted.url, project.project_id, 1)["rounds"] if r["status"] == "done"]
        assert (done[-1]["encoder_version"], done[-1]["n_labeled_tasks"], done[-1]["n_embedded"]) == (
            version,
            EVERY + 1,
            0,
        )
        assert f"fine-tuned encoder {version} loaded from the store" in restarted.log()
        assert [m["version"] for m in store.encoders()] == [version]
