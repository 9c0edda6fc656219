"""The service's latencies against a real Label Studio 1.23.2, on this machine's CPU.

Usage: ``OMP_WAIT_POLICY=PASSIVE python -m bench.bench_backend [--tasks 1000] [--repeats 5] [--modes embedded rq]``

Per mode (embedded: jobs in a thread of the server; rq: Redis + one worker process):
1. a project of ``--tasks`` MNIST PNGs is imported and connected; the backend embeds
   them all in the background (this embedding is timed but is not part of the figures);
2. **annotation -> reordered /next**: 20 seed labels, then ``--repeats`` times: submit
   the served task's label and time until the project's model version switches, then
   until ``/next`` serves the new queue head (embeddings are cached by then);
3. **/predict**, one task with a cached embedding, 100 calls after one warm-up;
4. **webhook burst**: 500 ANNOTATION_CREATED events in 5 s from 8 client threads,
   per-request latency, and the rounds they caused (counted until the backend is idle).
Medians and p99s are over all repeats; results go to bench/out/backend.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import redis
import requests

from devtools.backend_process import BackendProcesses
from devtools.images import import_images, write_mnist_pngs
from devtools.label_studio import LabelStudioServer
from devtools.project import DIGITS, Project, choices_config, wait_until_idle

OUT = Path(__file__).resolve().parent / "out" / "backend.json"
REDIS_DB = 13
log = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--modes", nargs="+", default=["embedded", "rq"], choices=["embedded", "rq"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results: dict[str, Any] = {"tasks": args.tasks, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as folder, LabelStudioServer() as label_studio:
        files = write_mnist_pngs(Path(folder) / "png", args.tasks, random_state=0)
        for mode in args.modes:
            results[mode] = run_mode(mode, label_studio, files, Path(folder) / mode, args.repeats)
            log.info("%s: %s", mode, json.dumps(results[mode]))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


def run_mode(
    mode: str, label_studio: LabelStudioServer, files: list[tuple[Path, int]], root: Path, repeats: int
) -> dict[str, Any]:
    root.mkdir(parents=True)
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key, "LOG_LEVEL": "WARNING"}
    if mode == "rq":
        redis.Redis(db=REDIS_DB).flushdb()
        env["REDIS_URL"] = f"redis://127.0.0.1:6379/{REDIS_DB}"
    project = Project.create(label_studio, f"bench {mode}", choices_config(DIGITS))
    by_name = {path.name: label for path, label in files}
    names = import_images(label_studio.url, label_studio.api_key, project.project_id, [p for p, _ in files])
    truth = {task_id: by_name[name] for task_id, name in names.items()}
    with BackendProcesses(root, env, workers=1 if mode == "rq" else 0) as backend:
        started = time.perf_counter()
        project.connect(backend.url)
        wait_until_idle(backend.url, project.project_id, timeout=1800)
        embed_seconds = time.perf_counter() - started
        for _ in range(20):
            task = project.next_task()
            project.submit(task["id"], [str(truth[task["id"]])])
        wait_until_idle(backend.url, project.project_id)
        reorder = [time_reorder(project, backend, truth) for _ in range(repeats)]
        predict = time_predict(project, backend)
        burst = time_burst(project, backend)
    return {
        "embed_all_seconds": round(embed_seconds, 1),
        "switch_seconds_median": _median([r["switch_seconds"] for r in reorder]),
        "next_seconds_median": _median([r["next_seconds"] for r in reorder]),
        "next_seconds_max": round(max(r["next_seconds"] for r in reorder), 3),
        "round_stages_median": {k: _median([r["stages"][k] for r in reorder]) for k in reorder[0]["stages"]},
        "next_is_queue_head": all(r["next_is_head"] for r in reorder),
        **predict,
        **burst,
    }


def time_reorder(project: Project, backend: BackendProcesses, truth: dict[int, int]) -> dict[str, Any]:
    """Submit one label; time until the project serves a new version, and until /next serves its head."""
    old = project.settings()["model_version"]
    task = project.next_task()
    started = time.perf_counter()
    project.submit(task["id"], [str(truth[task["id"]])])
    while project.settings()["model_version"] == old:
        time.sleep(0.05)
    switched = time.perf_counter() - started
    served = project.next_task()
    next_seconds = time.perf_counter() - started
    status = wait_until_idle(backend.url, project.project_id)
    last = status["rounds"][-1]
    stages = {k: last[k] for k in ("read_seconds", "embed_seconds", "train_seconds", "query_seconds", "push_seconds")}
    # The round that switched may have been followed by none: its head is the live queue's head.
    return {
        "switch_seconds": switched,
        "next_seconds": next_seconds,
        "stages": stages,
        "next_is_head": served["id"] == last["queue_head"][0],
    }


def time_predict(project: Project, backend: BackendProcesses) -> dict[str, Any]:
    task = project.next_task()
    body = {
        "tasks": [{"id": task["id"], "data": task["data"]}],
        "project": f"{project.project_id}.0",
        "label_config": project.settings()["label_config"],
    }
    with requests.Session() as session:
        first_started = time.perf_counter()
        session.post(f"{backend.url}/predict", json=body, timeout=60).raise_for_status()
        first = time.perf_counter() - first_started
        seconds = []
        for _ in range(100):
            started = time.perf_counter()
            answer = session.post(f"{backend.url}/predict", json=body, timeout=60)
            seconds.append(time.perf_counter() - started)
            assert answer.json()["results"][0]["result"], answer.text
    return {
        "predict_first_seconds": round(first, 4),
        "predict_seconds_median": _median(seconds),
        "predict_seconds_p99": round(float(np.percentile(seconds, 99)), 4),
    }


def time_burst(project: Project, backend: BackendProcesses, events: int = 500, window: float = 5.0) -> dict[str, Any]:
    rounds_before = len(wait_until_idle(backend.url, project.project_id)["rounds"])
    body = {
        "action": "ANNOTATION_CREATED",
        "project": {"id": project.project_id},
        "annotation": {"id": 1, "was_cancelled": False},
        "task": {"id": 1},
    }
    started = time.perf_counter()

    def send(index: int) -> float:
        time.sleep(max(0.0, started + index * window / events - time.perf_counter()))
        sent = time.perf_counter()
        requests.post(f"{backend.url}/webhook", json=body, timeout=10).raise_for_status()
        return time.perf_counter() - sent

    with ThreadPoolExecutor(8) as pool:
        latencies = list(pool.map(send, range(events)))
    burst_seconds = time.perf_counter() - started
    status = wait_until_idle(backend.url, project.project_id)
    return {
        "burst_events": events,
        "burst_seconds": round(burst_seconds, 2),
        "webhook_seconds_p50": round(float(np.percentile(latencies, 50)), 4),
        "webhook_seconds_p99": round(float(np.percentile(latencies, 99)), 4),
        "burst_rounds": len(status["rounds"]) - rounds_before,
        "burst_rounds_failed": sum(r["status"] != "done" for r in status["rounds"][rounds_before:]),
    }


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


if __name__ == "__main__":
    main()
