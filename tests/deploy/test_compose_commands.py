"""The compose file's API and worker commands, run as written outside a container, complete a round.

Only what a container network changes is rewritten: `python` is this interpreter, and
LABEL_STUDIO_URL, REDIS_URL and MODEL_DIR point at the test's Label Studio, Redis and a
temporary folder. Every other variable is resolved from .env.example as compose would.
"""

from __future__ import annotations

import sys
from pathlib import Path

from devtools.backend_process import BackendProcesses
from devtools.images import write_mnist_pngs
from devtools.label_studio import LabelStudioServer
from devtools.project import digits_project, wait_until_idle
from tests.deploy.files import compose, env_example, resolve


def service_command(service: str) -> list[str]:
    command = [str(part) for part in compose()["services"][service]["command"]]
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


def service_env(service: str, variables: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    environment = compose()["services"][service]["environment"]
    return {key: resolve(str(value), variables) for key, value in environment.items()} | overrides


def test_compose_commands_complete_a_round(label_studio: LabelStudioServer, tmp_path: Path, redis_url: str) -> None:
    variables = env_example() | {"LABEL_STUDIO_API_KEY": label_studio.api_key}
    network = {
        "LABEL_STUDIO_URL": label_studio.url,
        "REDIS_URL": redis_url,
        "MODEL_DIR": str(tmp_path / "models"),
    }
    api_env = service_env("backend", variables, network)
    worker_env = service_env("worker", variables, network)
    assert worker_env["ALFAMIX_DEVICE"] == "auto" and api_env["ALFAMIX_ENCODER"] == "efficientnet_lite0"

    files = write_mnist_pngs(tmp_path / "png", 30, random_state=3)
    project, truth = digits_project(label_studio, "compose commands", files)
    processes = BackendProcesses(
        tmp_path, api_env, server_command=service_command("backend"), worker_command=service_command("worker")
    )
    with processes as backend:
        backend.start_worker("worker", worker_env)
        project.connect(backend.url)
        wait_until_idle(backend.url, project.project_id)
        project.label_next(truth, 3)
        status = wait_until_idle(backend.url, project.project_id)

    last = status["rounds"][-1]
    assert last["status"] == "done" and last["n_labeled_tasks"] == 3 and last["n_predictions"] == 27
    assert project.settings()["model_version"] == last["model_version"]
