"""How fast the backend answers a storm of webhooks, against a real Label Studio 1.23.2, Redis and one RQ worker.

Usage: ``OMP_WAIT_POLICY=PASSIVE python -m bench.bench_webhook_storm [--runs 5] [--events 1100] [--window 10]
[--threads 16]``

The storm of tests/e2e/test_reliability.py (which checks what the backend does with it, not how
fast), timed. Each run starts a fresh backend on a flushed Redis database and makes two projects
(80 and 40 MNIST PNGs) with 6 and 3 labels; then ``--events`` ANNOTATION_CREATED webhooks go
out evenly over ``--window`` seconds from ``--threads`` threads, one in 11 for the second
project, while 4 real labels are submitted in Label Studio. Per run: p50 and p99 of the webhook
latency, answers other than 200, and the rounds the storm caused; then the medians over runs.
Results go to bench/out/webhook_storm.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import redis

from devtools.backend_process import BackendProcesses
from devtools.images import write_mnist_pngs
from devtools.label_studio import LabelStudioServer
from devtools.project import digits_project, wait_until_idle
from devtools.webhook_storm import send_storm

OUT = Path(__file__).resolve().parent / "out" / "webhook_storm.json"
REDIS_DB = 7  # flushed before every run; tests/redis_databases.py keeps the tests off it
N_FILES = 120  # 80 for the project, 40 for its neighbour
log = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--events", type=int, default=1100)
    parser.add_argument("--window", type=float, default=10.0, help="seconds over which the events are spread")
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    runs = []
    with tempfile.TemporaryDirectory() as folder, LabelStudioServer() as label_studio:
        files = write_mnist_pngs(Path(folder) / "png", N_FILES, random_state=4)
        for index in range(args.runs):
            root = Path(folder) / f"run-{index}"
            runs.append(run_storm(label_studio, files, root, args.events, args.window, args.threads))
            log.info("run %d of %d: %s", index + 1, args.runs, json.dumps(runs[-1]))
    results = {
        "events": args.events,
        "window_seconds": args.window,
        "threads": args.threads,
        "runs": runs,
        **{f"{key}_median": statistics.median(run[key] for run in runs) for key in ("p50_ms", "p99_ms", "rounds")},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


def run_storm(
    label_studio: LabelStudioServer, files: list[tuple[Path, int]], root: Path, events: int, window: float, threads: int
) -> dict[str, Any]:
    """One storm on a fresh backend and fresh projects; its latencies in ms and the rounds it caused."""
    root.mkdir(parents=True)
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    project, truth = digits_project(label_studio, f"storm {root.name}", files[:80])
    other, other_truth = digits_project(label_studio, f"storm neighbour {root.name}", files[80:])
    env = {
        "ALFAMIX_QUEUE_HEAD": "1000",  # as in the test: every round pushes the whole pool
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.api_key,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",
    }
    with BackendProcesses(root, env, workers=1) as backend:
        for p in (project, other):
            p.connect(backend.url)
            wait_until_idle(backend.url, p.project_id)
        project.label_next(truth, 6)
        other.label_next(other_truth, 3)
        rounds_before = len(wait_until_idle(backend.url, project.project_id)["rounds"])
        answers = send_storm(
            backend.url,
            [project.project_id] * 10 + [other.project_id],
            events,
            window,
            threads,
            meanwhile=lambda: project.label_next(truth, 4),
        )
        rounds_after = len(wait_until_idle(backend.url, project.project_id)["rounds"])
        wait_until_idle(backend.url, other.project_id)
    latencies_ms = [answer.seconds * 1000 for answer in answers]
    return {
        "p50_ms": round(float(np.percentile(latencies_ms, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies_ms, 99)), 2),
        "not_200": sum(answer.status_code != 200 for answer in answers),
        "rounds": rounds_after - rounds_before,
    }


if __name__ == "__main__":
    main()
