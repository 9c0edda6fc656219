"""The end-to-end harness itself: a real Label Studio answers, authenticates and serves uploaded PNGs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from devtools.images import import_images, mnist_digits, write_mnist_pngs
from devtools.label_studio import LabelStudioServer

pytestmark = pytest.mark.slow

DIGITS_CONFIG = (
    '<View><Image name="image" value="$image"/><Choices name="label" toName="image">'
    + "".join(f'<Choice value="{digit}"/>' for digit in range(10))
    + "</Choices></View>"
)


@pytest.fixture(scope="module")
def project_id(label_studio: LabelStudioServer) -> int:
    response = requests.post(
        f"{label_studio.url}/api/projects",
        headers=label_studio.headers,
        json={"title": "MNIST harness", "label_config": DIGITS_CONFIG},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


@pytest.fixture(scope="module")
def imported(
    label_studio: LabelStudioServer, project_id: int, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[tuple[Path, int]], dict[int, str]]:
    written = write_mnist_pngs(tmp_path_factory.mktemp("mnist"), 30, random_state=0)
    task_files = import_images(label_studio.url, label_studio.api_key, project_id, [path for path, _ in written])
    return written, task_files


def test_server_answers_health(label_studio: LabelStudioServer) -> None:
    response = requests.get(f"{label_studio.url}/health", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "UP"}


def test_server_reports_the_pinned_version(label_studio: LabelStudioServer) -> None:
    response = requests.get(f"{label_studio.url}/api/version", headers=label_studio.headers, timeout=5)
    assert response.status_code == 200
    assert response.json()["release"] == "1.23.2"


def test_legacy_token_authenticates_as_the_admin(label_studio: LabelStudioServer) -> None:
    response = requests.get(f"{label_studio.url}/api/current-user/whoami", headers=label_studio.headers, timeout=5)
    assert response.status_code == 200
    assert response.json()["email"] == label_studio.username


def test_wrong_token_is_refused(label_studio: LabelStudioServer) -> None:
    response = requests.get(
        f"{label_studio.url}/api/current-user/whoami", headers={"Authorization": "Token not-the-token"}, timeout=5
    )
    assert response.status_code == 401


def test_project_keeps_the_digit_label_config(label_studio: LabelStudioServer, project_id: int) -> None:
    response = requests.get(f"{label_studio.url}/api/projects/{project_id}", headers=label_studio.headers, timeout=5)
    assert response.status_code == 200
    assert response.json()["label_config"] == DIGITS_CONFIG


def test_mnist_sample_is_stratified_and_reproducible() -> None:
    indices, images, labels = mnist_digits(30, random_state=0)
    assert images.shape == (30, 28, 28)
    assert images.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == [3] * 10
    assert len(set(indices.tolist())) == 30
    assert mnist_digits(30, random_state=0)[0].tolist() == indices.tolist()


def test_30_imported_pngs_make_exactly_30_tasks(
    label_studio: LabelStudioServer, project_id: int, imported: tuple[list[tuple[Path, int]], dict[int, str]]
) -> None:
    written, task_files = imported
    response = requests.get(
        f"{label_studio.url}/api/tasks",
        headers=label_studio.headers,
        params={"project": project_id, "page_size": 100},
        timeout=30,
    )
    assert response.status_code == 200
    tasks = response.json()["tasks"]
    assert len(tasks) == 30
    assert {task["id"] for task in tasks} == set(task_files)
    assert sorted(task_files.values()) == sorted(path.name for path, _ in written)


def test_uploaded_png_downloads_with_the_written_pixels(
    label_studio: LabelStudioServer, imported: tuple[list[tuple[Path, int]], dict[int, str]]
) -> None:
    written, task_files = imported
    task_id, file_name = min(task_files.items())
    response = requests.get(f"{label_studio.url}/api/tasks/{task_id}", headers=label_studio.headers, timeout=10)
    image_url = response.json()["data"]["image"]
    assert image_url.startswith("/data/upload/")
    assert image_url.endswith(f"-{file_name}")

    download = requests.get(f"{label_studio.url}{image_url}", headers=label_studio.headers, timeout=10)

    assert download.status_code == 200
    assert download.content.startswith(b"\x89PNG\r\n\x1a\n")
    source = next(path for path, _ in written if path.name == file_name)
    with Image.open(io.BytesIO(download.content)) as served, Image.open(source) as original:
        assert served.mode == "L"
        assert served.size == (28, 28)
        assert np.array_equal(np.asarray(served), np.asarray(original))


def _first_image_url(label_studio: LabelStudioServer, task_files: dict[int, str]) -> str:
    task_id = min(task_files)
    task = requests.get(f"{label_studio.url}/api/tasks/{task_id}", headers=label_studio.headers, timeout=10).json()
    return str(task["data"]["image"])


def test_upload_is_refused_without_a_token(
    label_studio: LabelStudioServer, imported: tuple[list[tuple[Path, int]], dict[int, str]]
) -> None:
    image_url = _first_image_url(label_studio, imported[1])
    response = requests.get(f"{label_studio.url}{image_url}", timeout=10, allow_redirects=False)
    assert response.status_code == 401


def test_upload_downloads_with_a_personal_access_token_exchanged_for_bearer(
    label_studio: LabelStudioServer, imported: tuple[list[tuple[Path, int]], dict[int, str]]
) -> None:
    image_url = _first_image_url(label_studio, imported[1])
    personal_token = label_studio.personal_access_token()
    refreshed = requests.post(f"{label_studio.url}/api/token/refresh/", json={"refresh": personal_token}, timeout=10)
    assert refreshed.status_code == 200
    bearer = {"Authorization": f"Bearer {refreshed.json()['access']}"}

    response = requests.get(f"{label_studio.url}{image_url}", headers=bearer, timeout=10)
    raw_pat = requests.get(
        f"{label_studio.url}{image_url}", headers={"Authorization": f"Bearer {personal_token}"}, timeout=10
    )

    assert response.status_code == 200
    assert response.content.startswith(b"\x89PNG")
    assert raw_pat.status_code == 401  # the PAT itself is a refresh token, not a bearer token


# --- Label Studio on PostgreSQL -------------------------------------------------------------


def test_postgres_server_stores_an_imported_project_in_its_fresh_database(
    label_studio_postgres: LabelStudioServer, tmp_path: Path
) -> None:
    ls = label_studio_postgres
    assert ls.database == "postgresql" and ls.postgres is not None and ls.postgres_database is not None
    created = ls.session().post(
        f"{ls.url}/api/projects", json={"title": "MNIST on PostgreSQL", "label_config": DIGITS_CONFIG}, timeout=30
    )
    assert created.status_code == 201, created.text
    project_id = int(created.json()["id"])
    written = write_mnist_pngs(tmp_path, 5, random_state=1)
    task_files = import_images(ls.url, ls.api_key, project_id, [path for path, _ in written])

    next_task = ls.session().get(f"{ls.url}/api/projects/{project_id}/next", timeout=30)

    assert next_task.status_code == 200, next_task.text
    assert next_task.json()["id"] in task_files
    rows = ls.postgres.query(
        f"SELECT p.title, count(t.id) FROM project p JOIN task t ON t.project_id = p.id "
        f"WHERE p.id = {project_id} GROUP BY p.title",
        database=ls.postgres_database,
    )
    assert rows == [("MNIST on PostgreSQL", "5")]
    assert not list(ls.root.rglob("*.sqlite3")), "Label Studio wrote a SQLite database as well"


def test_postgres_server_drops_its_database_on_stop() -> None:
    server = LabelStudioServer(database="postgresql")
    assert server.postgres is not None
    with server:
        database = server.postgres_database
        assert database is not None and server.postgres.exists(database)

    assert not server.postgres.exists(database)
    assert not server.root.exists()


def test_unknown_database_is_refused() -> None:
    with pytest.raises(ValueError, match=r"database='mysql' should be one of \('sqlite', 'postgresql'\)"):
        LabelStudioServer(database="mysql")
