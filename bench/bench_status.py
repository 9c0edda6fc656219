"""Cost of a status refresh and a /metrics scrape against the length of a project's history.

Usage: ``python -m bench.bench_status [--lengths 10 1000 10000] [--repeats 20] [--redis-db 5]``

For each history length, one project gets that many round records (in files, and in Redis
database ``--redis-db``, which is emptied first), then ``GET /projects/<id>/status`` and ``GET /metrics`` are timed
through the app. In the same run the way before issue 12 is timed too: read the whole
history and fold it (the learning curve, the audit estimate, the /metrics sums), so the two
compare as a ratio on the same, noisy machine. Figures are medians over ``--repeats``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from redis import Redis

from backend.http.app import create_app
from backend.jobs.dispatch import build_dispatcher
from backend.ml_backend import ALFAMixBackend
from backend.settings import Settings
from backend.state.learning_curve import audit_estimate, learning_curve
from backend.state.records import RoundRecord
from backend.state.store import ProjectStore, open_project_store

log = logging.getLogger(__name__)
PROJECT = 1
REDIS_DB = 5  # emptied by this benchmark only: tests/redis_databases.py keeps the tests off it


def history(n: int) -> list[RoundRecord]:
    return [
        RoundRecord(
            "done",
            float(i),
            model_version=f"alfamix-{i}-20260101000000",
            n_tasks=100_000,
            n_labeled_tasks=i,
            n_unlabeled_tasks=100_000 - i,
            n_prelabeled=1,
            prelabel_accuracy=float(i % 3 != 0),
            n_audited=int(i % 20 == 0),
            audit_hits=int(i % 40 == 0),
            n_predictions=50,
            queue_head=list(range(10)),
            read_seconds=0.05,
            train_seconds=0.4,
            query_seconds=0.6,
            push_seconds=0.3,
        )
        for i in range(n)
    ]


def fold_whole_history(store: ProjectStore) -> None:
    """What a refresh did before the summary: read every record and fold it."""
    rounds = store.rounds()
    learning_curve(rounds)
    audit_estimate(rounds)
    sum(r.n_predictions for r in rounds if r.done)


def median_ms(call: Callable[[], object], repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * 1000


def measure(settings: Settings, length: int, repeats: int) -> dict[str, float]:
    connection = Redis.from_url(settings.redis_url) if settings.redis_url else None
    if connection is not None:
        connection.flushdb()
    store = open_project_store(settings.model_dir, PROJECT, connection)
    for record in history(length):
        store.append_round(record)
    backend = ALFAMixBackend(settings, build_dispatcher(settings, connection), connection)
    client = TestClient(create_app(backend))
    return {
        "status_ms": median_ms(lambda: client.get(f"/projects/{PROJECT}/status"), repeats),
        "metrics_ms": median_ms(lambda: client.get("/metrics"), repeats),
        "whole_history_fold_ms": median_ms(lambda: fold_whole_history(store), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 1000, 10000])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--redis-db", type=int, default=REDIS_DB, help="emptied first; no other user may share it")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    stores = {"files": None, "redis": f"redis://127.0.0.1:6379/{args.redis_db}"}
    log.info("| store | rounds | status | /metrics | whole history read and folded (before) |")
    log.info("|---|---|---|---|---|")
    for name, redis_url in stores.items():
        for length in args.lengths:
            with tempfile.TemporaryDirectory() as model_dir:
                settings = Settings(model_dir=Path(model_dir), redis_url=redis_url)
                figures = measure(settings, length, args.repeats)
            log.info(
                "| %s | %d | %.1f ms | %.1f ms | %.1f ms |",
                name,
                length,
                figures["status_ms"],
                figures["metrics_ms"],
                figures["whole_history_fold_ms"],
            )


if __name__ == "__main__":
    main()
