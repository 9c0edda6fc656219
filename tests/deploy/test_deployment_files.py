"""Dockerfile, docker-compose.yml and .env.example agree with the code (no Docker engine runs here)."""

from __future__ import annotations

import importlib.util
import ipaddress
import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from backend.settings import Settings
from devtools.postgres import Postgres
from tests.deploy.files import (
    ROOT,
    compose,
    dockerfile_env,
    dockerfile_instructions,
    dockerfile_values,
    env_example,
    exec_form,
    interpolated_names,
    label_studio_database,
    label_studio_refuses,
    resolve,
)

BACKEND_SERVICES = ("backend", "worker")
REQUIRED_BACKEND_ENV = {"LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "REDIS_URL", "MODEL_DIR"}


class RecordingEnv(dict[str, str]):
    """An empty environment that remembers which names were asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def settings_names() -> set[str]:
    environ = RecordingEnv()
    Settings.from_env(environ)
    return environ.asked


def requirement_pin(package: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.startswith(f"{package}=="):
            return line.split("==")[1].strip()
    raise AssertionError(f"{package} is not pinned in requirements.txt")


def module_of(command: list[str]) -> str:
    assert command[:2] == ["python", "-m"], command
    return command[2]


def assert_runnable_module(name: str) -> None:
    spec = importlib.util.find_spec(f"{name}.__main__") if (ROOT / name.replace(".", "/")).is_dir() else None
    spec = spec or importlib.util.find_spec(name)
    assert spec is not None, f"python -m {name}: no such module"


def services() -> dict[str, Any]:
    return dict(compose()["services"])


def environment(service: str) -> dict[str, str]:
    return {key: str(value) for key, value in (services()[service].get("environment") or {}).items()}


def label_studio_database_environment() -> dict[str, str]:
    """The label-studio service's variables that choose its database."""
    env = environment("label-studio")
    return {key: value for key, value in env.items() if key == "DJANGO_DB" or key.startswith("POSTGRE_")}


# --- Dockerfile --------------------------------------------------------------------------


def test_base_image_carries_the_pinned_torch_and_its_cuda() -> None:
    (base,) = dockerfile_values("FROM")
    image, _, tag = base.partition(":")
    assert image == "pytorch/pytorch"
    assert tag == f"{requirement_pin('torch')}-cuda{torch.version.cuda}-cudnn9-runtime"


def test_image_runs_as_a_non_root_user_before_its_command() -> None:
    keywords = [keyword for keyword, _ in dockerfile_instructions()]
    users = dockerfile_values("USER")
    assert users and users[-1] not in ("root", "0")
    assert keywords.index("USER") < keywords.index("CMD")
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")


def test_dependencies_install_before_the_code_is_copied() -> None:
    instructions = dockerfile_instructions()
    install = next(i for i, (k, a) in enumerate(instructions) if k == "RUN" and "requirements.txt" in a)
    copies = [(i, a) for i, (k, a) in enumerate(instructions) if k == "COPY"]
    assert copies[0][1] == "requirements.txt constraints.txt ./" and copies[0][0] < install
    assert instructions[install][1] == "pip install -r requirements.txt -c constraints.txt"
    assert all(i > install for i, _ in copies[1:])
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {f"!{path}" for _, a in copies for path in a.split()[:-1]} <= set(ignored)


def test_default_command_is_the_api_and_the_healthcheck_hits_its_health_endpoint() -> None:
    (cmd,) = dockerfile_values("CMD")
    assert exec_form(cmd) == ["python", "-m", "backend"]
    assert_runnable_module("backend")
    (healthcheck,) = dockerfile_values("HEALTHCHECK")
    assert "/health" in healthcheck and "PORT" in healthcheck
    assert dockerfile_values("EXPOSE") == [str(Settings().port)] == [dockerfile_env()["PORT"]]


def test_state_and_weights_are_volumes_and_no_secret_is_baked_in() -> None:
    env = dockerfile_env()
    (volumes,) = dockerfile_values("VOLUME")
    assert set(exec_form(volumes)) == {env["MODEL_DIR"], env["TORCH_HOME"]}
    secret_words = ("KEY", "PASS", "TOKEN", "SECRET")
    assert not [name for name in env if any(word in name for word in secret_words)]


# --- docker-compose.yml ------------------------------------------------------------------


def test_the_stack_has_its_five_services_with_pinned_images() -> None:
    assert set(services()) == {"label-studio", "postgres", "redis", "backend", "worker"}
    for name, service in services().items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image} is not pinned"
    assert services()["label-studio"]["image"] == "heartexlabs/label-studio:1.23.2"
    # A minor version, not a moving major tag such as postgres:13.
    assert re.fullmatch(r"postgres:\d+\.\d+", services()["postgres"]["image"])


@pytest.mark.parametrize(("service", "module"), [("backend", "backend"), ("worker", "backend.jobs.worker")])
def test_backend_commands_run_modules_that_exist(service: str, module: str) -> None:
    command = services()[service]["command"]
    assert module_of(command) == module
    assert_runnable_module(module)


@pytest.mark.parametrize("service", BACKEND_SERVICES)
def test_backend_environment_uses_only_names_the_settings_read(service: str) -> None:
    names = set(environment(service))
    assert names <= settings_names(), names - settings_names()
    assert names >= REQUIRED_BACKEND_ENV
    assert environment(service)["LABEL_STUDIO_URL"] == "${LABEL_STUDIO_URL:-http://label-studio:8080}"
    assert services()[service]["extra_hosts"] == ["host.docker.internal:host-gateway"]


@pytest.mark.parametrize("service", BACKEND_SERVICES)
def test_model_dir_and_weights_cache_are_mounted_where_the_image_expects_them(service: str) -> None:
    targets = {mount.split(":")[1] for mount in services()[service]["volumes"]}
    assert environment(service)["MODEL_DIR"] == dockerfile_env()["MODEL_DIR"]
    assert targets == {dockerfile_env()["MODEL_DIR"], dockerfile_env()["TORCH_HOME"]}


def test_ports_are_published_on_this_machine_only_unless_the_owner_says_otherwise() -> None:
    assert services()["backend"]["ports"] == [f"${{BACKEND_BIND:-127.0.0.1}}:{Settings().port}:{Settings().port}"]
    assert services()["label-studio"]["ports"] == ["${LABEL_STUDIO_BIND:-127.0.0.1}:8080:8080"]
    assert (env_example()["BACKEND_BIND"], env_example()["LABEL_STUDIO_BIND"]) == ("127.0.0.1", "127.0.0.1")


def test_the_worker_reserves_a_gpu() -> None:
    (device,) = services()["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "deploy" not in services()["backend"]


def test_label_studio_may_call_the_backend_and_no_other_internal_address(tmp_path: Path) -> None:
    env = environment("label-studio")
    assert "ML_BLOCK_LOCAL_IP" not in env and env["SSRF_PROTECTION_ENABLED"] == "true"
    backend = services()["backend"]["networks"]["default"]["ipv4_address"]
    (network,) = compose()["networks"]["default"]["ipam"]["config"]
    assert ipaddress.ip_address(backend) in ipaddress.ip_network(network["subnet"])
    others = [
        "172.30.90.2",  # Redis or PostgreSQL on the compose network
        "172.30.90.1",  # the host, as seen from the network
        "127.0.0.1",
        "169.254.169.254",  # cloud metadata
        "100.100.100.200",  # cloud metadata in the shared address space
        "10.0.0.5",
        "192.168.1.1",
        "::1",
        "fd00::1",
    ]
    refused = label_studio_refuses(env, [backend, "93.184.216.34", *others], tmp_path)
    assert refused == {backend: False, "93.184.216.34": False, **dict.fromkeys(others, True)}
    # The admin's token is the backend's API key.
    token = interpolated_names(env["LABEL_STUDIO_USER_TOKEN"])
    assert token == interpolated_names(environment("backend")["LABEL_STUDIO_API_KEY"]) == {"LABEL_STUDIO_API_KEY"}
    assert env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"


def test_dependencies_wait_for_health_and_redis_persists() -> None:
    for name, service in services().items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert condition["condition"] == "service_healthy", (name, dependency)
            # With your own Label Studio the label-studio profile is off, and the backend starts without it.
            assert condition.get("required", True) is (dependency != "label-studio"), (name, dependency)
            assert "healthcheck" in services()[dependency], dependency
    redis = services()["redis"]
    assert redis["command"][1:3] == ["--appendonly", "yes"]
    assert [mount.split(":")[1] for mount in redis["volumes"]] == ["/data"]
    assert set(compose()["volumes"]) == {"postgres-data", "label-studio-data", "redis-data", "models", "torch-cache"}


# --- Label Studio on PostgreSQL ------------------------------------------------------------


def test_postgres_keeps_its_data_in_a_named_volume_and_reports_health_with_pg_isready() -> None:
    postgres = services()["postgres"]
    assert postgres["volumes"] == ["postgres-data:/var/lib/postgresql/data"]
    kind, command = postgres["healthcheck"]["test"]
    assert kind == "CMD-SHELL" and command.startswith("pg_isready ")
    # TCP, so the socket-only server the image runs while initialising does not count as healthy.
    assert "-h 127.0.0.1" in command
    assert services()["label-studio"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_label_studio_and_postgres_take_the_same_database_user_and_password() -> None:
    label_studio, postgres = environment("label-studio"), environment("postgres")
    for label_studio_name, postgres_name in [
        ("POSTGRE_NAME", "POSTGRES_DB"),
        ("POSTGRE_USER", "POSTGRES_USER"),
        ("POSTGRE_PASSWORD", "POSTGRES_PASSWORD"),
    ]:
        assert interpolated_names(label_studio[label_studio_name]) == {label_studio_name}
        assert interpolated_names(postgres[postgres_name]) == {label_studio_name}


def test_label_studio_database_names_are_the_ones_the_postgres_e2e_tests_run_with() -> None:
    assert set(label_studio_database_environment()) == set(Postgres().label_studio_env("any"))


def test_label_studio_settings_select_the_postgres_service(tmp_path: Path) -> None:
    variables = env_example()
    label_studio_env = {key: resolve(value, variables) for key, value in label_studio_database_environment().items()}

    database = label_studio_database(label_studio_env, tmp_path)

    assert database == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": variables["POSTGRE_NAME"],
        "USER": variables["POSTGRE_USER"],
        "PASSWORD": variables["POSTGRE_PASSWORD"],
        "HOST": "postgres",
        "PORT": 5432,
    }
    assert label_studio_database({}, tmp_path)["ENGINE"] == "django.db.backends.sqlite3"  # without DJANGO_DB


# --- .env.example and README ---------------------------------------------------------------


def env_example_lines() -> Iterator[tuple[str, str]]:
    """(previous line, variable line) pairs."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    for previous, line in itertools.pairwise(lines):
        if line and not line.startswith("#"):
            yield previous, line


def test_env_example_lists_every_variable_the_compose_file_reads_each_with_a_comment() -> None:
    compose_reads = interpolated_names((ROOT / "docker-compose.yml").read_text()) | {"COMPOSE_PROFILES"}
    assert set(env_example()) == compose_reads
    for previous, line in env_example_lines():
        assert previous.startswith("#"), f".env.example: {line!r} has no comment above it"


def test_readme_documents_every_setting_and_the_compose_model_url() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in settings_names() if f"`{name}`" not in readme]
    assert not missing, f"README.md does not document {missing}"
    assert "http://backend:9090" in readme


def test_label_studio_and_its_database_are_a_profile_on_by_default() -> None:
    assert services()["label-studio"]["profiles"] == services()["postgres"]["profiles"] == ["label-studio"]
    assert all("profiles" not in services()[name] for name in ("redis", "backend", "worker"))
    assert env_example()["COMPOSE_PROFILES"] == "label-studio"


def test_the_backend_image_is_rebuilt_on_every_up_so_an_upgrade_runs_the_new_code() -> None:
    assert services()["backend"]["build"] == "." and services()["backend"]["pull_policy"] == "build"


def test_the_worker_runs_the_image_the_backend_builds_so_it_is_built_once() -> None:
    # Compose builds each service that has a build section; a service without one that names an
    # image another service builds is created from that build (compose v2, pkg/compose/pull.go).
    worker, backend = services()["worker"], services()["backend"]
    assert "build" not in worker
    assert worker["image"] == backend["image"] == "alfamix-backend:0.1.0"
    assert worker["pull_policy"] == "never"  # never looked up on Docker Hub under that name
