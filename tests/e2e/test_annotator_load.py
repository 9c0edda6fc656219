"""Three annotators label through /next while the backend's rounds run: Label Studio never answers 5xx.

Runs on SQLite (the ``label_studio`` fixture) and on PostgreSQL (``label_studio_postgres``),
with Redis and one RQ worker. Latencies are not checked here; bench/bench_annotators.py
measures them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from devtools.annotators import backend_5xx_lines, create_annotators, database_locked_errors, label_continuously
from devtools.backend_process import BackendProcesses
from devtools.images import write_mnist_pngs
from devtools.label_studio import LabelStudioServer
from devtools.project import digits_project, wait_until_idle

logger = logging.getLogger(__name__)

N_TASKS = 200
N_LABELS = 60
N_ANNOTATORS = 3


@pytest.fixture(scope="module")
def mnist_files(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, int]]:
    return write_mnist_pngs(tmp_path_factory.mktemp("mnist"), N_TASKS, random_state=3)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(database: str, request: pytest.FixtureRequest) -> LabelStudioServer:
    if database == "sqlite":
        return request.getfixturevalue("label_studio")
    try:
        return request.getfixturevalue("label_studio_postgres")
    except pytest.FixtureLookupError:
        pytest.skip("the label_studio_postgres fixture is missing from tests/conftest.py")


def test_annotators_label_while_rounds_run_without_server_errors(
    database: str,
    server: LabelStudioServer,
    mnist_files: list[tuple[Path, int]],
    tmp_path: Path,
    empty_redis_url: str,
) -> None:
    env = {
        "LABEL_STUDIO_URL": server.url,
        "LABEL_STUDIO_API_KEY": server.api_key,
        "REDIS_URL": empty_redis_url,
        "ALFAMIX_ENCODER": "resnet18",  # a fast encoder: this test is about load, not accuracy
        "ALFAMIX_ENCODER_WEIGHTS": "none",
        "ALFAMIX_BATCH_SIZE": "10",
        "LOG_LEVEL": "INFO",
    }
    project, truth = digits_project(server, f"annotator load {database}", mnist_files)
    annotators = create_annotators(server, N_ANNOTATORS)
    locked_before = len(database_locked_errors(server.log_path.read_text(errors="replace")))

    with BackendProcesses(tmp_path, env, workers=1) as backend:
        project.connect(backend.url)
        wait_until_idle(backend.url, project.project_id, timeout=300)  # the embedding /setup started
        result = label_continuously(project, annotators, truth, labels=N_LABELS, timeout=150)
        status = wait_until_idle(backend.url, project.project_id, timeout=120)
        backend_errors = backend_5xx_lines(backend.log("backend"))
    summary = result.summary()
    locked = database_locked_errors(server.log_path.read_text(errors="replace"))[locked_before:]
    logger.info("%s: %s (%d 'database is locked' errors logged)", database, summary, len(locked))

    assert result.server_errors == 0, summary["failures"]
    assert result.labels == N_LABELS, summary
    annotations = sum(len(task["annotations"]) for task in project.tasks())
    assert annotations == result.labels
    done = [r for r in status["rounds"] if r["status"] == "done"]
    assert len(done) >= 2, status["rounds"]
    assert str(project.settings()["model_version"]).startswith("alfamix-")
    assert backend_errors == []
