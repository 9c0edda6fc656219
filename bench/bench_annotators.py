"""Annotators labeling through /next on a real Label Studio 1.23.2, without and with the backend connected.

Usage: ``OMP_WAIT_POLICY=PASSIVE python -m bench.bench_annotators --database sqlite|postgresql
[--labels 500] [--tasks 1000] [--annotators 3] [--repeats 1]``

One repeat starts a fresh Label Studio on the given database and signs up ``--annotators``
accounts (devtools/annotators.py). Then come two arms, each on a fresh project of the same
``--tasks`` MNIST PNGs, in which the annotators label ``--labels`` tasks through
``GET /api/projects/{id}/next`` and ``POST /api/tasks/{id}/annotations/`` as fast as the answers come:

- **baseline**: no backend connected; the project keeps Label Studio's defaults (Sequential sampling);
- **backend**: Redis (a fresh DB, flushed) and one RQ worker, ResNet-18 with random weights as the
  encoder (this measures load, not accuracy); connected, and every task embedded before labeling starts.

The arms swap order from one repeat to the next. Per arm: labels, latency of /next and submit,
Label Studio's answers >= 500, "database is locked" errors in its log; for the backend arm also
the rounds it finished (while the annotators labeled, and until it was idle again), failed
rounds, its own 5xx answers (from its log) and the webhook events it received. Figures are
medians over repeats; every repeat is in bench/out/annotators-<database>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import requests

from devtools.annotators import (
    ENDPOINTS,
    Annotator,
    backend_5xx_lines,
    create_annotators,
    database_locked_errors,
    label_continuously,
)
from devtools.backend_process import BackendProcesses
from devtools.images import write_mnist_pngs
from devtools.label_studio import DATABASES, LabelStudioServer
from devtools.project import digits_project, wait_until_idle

OUT = Path(__file__).resolve().parent / "out"
REDIS_DB = 9
ARMS = ("baseline", "backend")
log = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=DATABASES, default="sqlite")
    parser.add_argument("--labels", type=int, default=500, help="labels per arm, all annotators together")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--annotators", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one arm may label for")
    args = parser.parse_args()
    if not 1 <= args.labels <= args.tasks:
        parser.error(f"--labels {args.labels} should be in [1, --tasks {args.tasks}]")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    repeats = []
    with tempfile.TemporaryDirectory() as folder:
        files = write_mnist_pngs(Path(folder) / "png", args.tasks, random_state=0)
        for repeat in range(args.repeats):
            order = ARMS if repeat % 2 == 0 else ARMS[::-1]
            repeats.append(run_repeat(args, files, Path(folder) / f"repeat-{repeat}", order))
            log.info("repeat %d: %s", repeat, json.dumps(repeats[-1]))
    results = {
        "database": args.database,
        "tasks": args.tasks,
        "labels": args.labels,
        "annotators": args.annotators,
        "median": {arm: _medians([r[arm]["figures"] for r in repeats]) for arm in ARMS},
        "repeats": repeats,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"annotators-{args.database}.json"
    path.write_text(json.dumps(results, indent=1))
    print(table(results))
    print(f"written to {path}")


def run_repeat(
    args: argparse.Namespace, files: list[tuple[Path, int]], root: Path, order: tuple[str, ...]
) -> dict[str, Any]:
    root.mkdir(parents=True)
    result: dict[str, Any] = {"order": list(order)}
    with LabelStudioServer(root / "label-studio", database=args.database) as label_studio:
        annotators = create_annotators(label_studio, args.annotators)
        for arm in order:
            run_arm = run_backend_arm if arm == "backend" else run_baseline_arm
            result[arm] = run_arm(args, label_studio, annotators, files, root / arm)
            log.info("%s: %s", arm, json.dumps(result[arm]["figures"]))
    return result


def run_baseline_arm(
    args: argparse.Namespace,
    label_studio: LabelStudioServer,
    annotators: list[Annotator],
    files: list[tuple[Path, int]],
    root: Path,
) -> dict[str, Any]:
    project, truth = digits_project(label_studio, "annotators without a backend", files)
    log_offset = _log_size(label_studio)
    labeled = label_continuously(project, annotators, truth, labels=args.labels, timeout=args.timeout)
    summary = labeled.summary()
    locked = database_locked_errors(_log_since(label_studio, log_offset))
    return {"figures": _figures(summary, len(locked)), "sampling": project.settings()["sampling"], "run": summary}


def run_backend_arm(
    args: argparse.Namespace,
    label_studio: LabelStudioServer,
    annotators: list[Annotator],
    files: list[tuple[Path, int]],
    root: Path,
) -> dict[str, Any]:
    root.mkdir(parents=True)
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
    env = {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.api_key,
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "ALFAMIX_ENCODER": "resnet18",
        "ALFAMIX_ENCODER_WEIGHTS": "none",
        "LOG_LEVEL": "INFO",
    }
    project, truth = digits_project(label_studio, "annotators with the backend", files)
    with BackendProcesses(root, env, workers=1) as backend:
        started = time.perf_counter()
        project.connect(backend.url)
        wait_until_idle(backend.url, project.project_id, timeout=1800)
        embed_seconds = time.perf_counter() - started
        log_offset = _log_size(label_studio)
        labeling_from = time.time()
        labeled = label_continuously(project, annotators, truth, labels=args.labels, timeout=args.timeout)
        labeling_until = time.time()
        locked = database_locked_errors(_log_since(label_studio, log_offset))
        status = wait_until_idle(backend.url, project.project_id, timeout=600)
        metrics = requests.get(f"{backend.url}/metrics", timeout=30).text
        backend_errors = backend_5xx_lines(backend.log("backend"))
    summary = labeled.summary()
    done = [r for r in status["rounds"] if r["status"] == "done"]
    figures = _figures(summary, len(locked)) | {
        "rounds_during_labeling": sum(labeling_from <= r.get("finished_at", 0) <= labeling_until for r in done),
        "rounds_done": len(done),
        "rounds_failed": sum(r["status"] == "failed" for r in status["rounds"]),
        "backend_5xx": len(backend_errors),
        "webhook_events": _metric_sum(metrics, "alfamix_webhook_events_total"),
    }
    return {
        "figures": figures,
        "embed_all_seconds": round(embed_seconds, 1),
        "sampling": project.settings()["sampling"],
        "backend_5xx_lines": backend_errors[:20],
        "run": summary,
    }


def _figures(summary: dict[str, Any], database_locked: int) -> dict[str, float]:
    figures: dict[str, float] = {
        "labels": summary["labels"],
        "labels_per_second": summary["labels_per_second"],
        "label_studio_5xx": summary["server_errors"],
        "database_locked": database_locked,
        "duplicate_tasks": summary["duplicate_tasks"],
    }
    for endpoint in ENDPOINTS:
        latency = summary["latency"][endpoint]
        figures |= {f"{endpoint}_{q}_ms": round(1000 * latency[q], 1) for q in ("p50", "p95", "p99", "max")}
    return figures


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(run[key] for run in runs), 2) for key in runs[0]}


def _log_size(label_studio: LabelStudioServer) -> int:
    return label_studio.log_path.stat().st_size


def _log_since(label_studio: LabelStudioServer, offset: int) -> str:
    with open(label_studio.log_path, "rb") as file:
        file.seek(offset)
        return file.read().decode(errors="replace")


def _metric_sum(metrics: str, name: str) -> float:
    """The sum of every sample of one metric in the Prometheus text format, whatever its labels."""
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith((f"{name}{{", f"{name} "))
    )


ROWS = (
    ("labels", "labels"),
    ("labels per second", "labels_per_second"),
    ("/next p50 (ms)", "next_p50_ms"),
    ("/next p99 (ms)", "next_p99_ms"),
    ("/next max (ms)", "next_max_ms"),
    ("submit p50 (ms)", "submit_p50_ms"),
    ("submit p99 (ms)", "submit_p99_ms"),
    ("submit max (ms)", "submit_max_ms"),
    ("Label Studio answers >= 500", "label_studio_5xx"),
    ('"database is locked" errors logged', "database_locked"),
    ("tasks annotated twice", "duplicate_tasks"),
    ("backend rounds done while labeling", "rounds_during_labeling"),
    ("backend rounds done in all", "rounds_done"),
    ("backend rounds failed", "rounds_failed"),
    ("backend answers >= 500 (its log)", "backend_5xx"),
    ("webhook events the backend got", "webhook_events"),
)


def table(results: dict[str, Any]) -> str:
    """The medians as a Markdown table, one column per arm."""
    median = results["median"]
    lines = [
        f"{results['database']}: {results['annotators']} annotators, {results['labels']} labels per arm, "
        f"{results['tasks']} tasks, median of {len(results['repeats'])} repeat(s)",
        "",
        "| | without backend | with backend |",
        "|---|---:|---:|",
    ]
    for title, key in ROWS:
        cells = [f"{median[arm][key]:g}" if key in median[arm] else "" for arm in ARMS]
        lines.append(f"| {title} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
