"""Rounds that cost what changed: the service against a real Label Studio 1.23.2 at 1k to 100k tasks.

Usage: ``OMP_WAIT_POLICY=PASSIVE python -m bench.bench_scale --tasks 1000 10000 100000 --repeats 5
[--database sqlite] [--label-studio-env NAME=VALUE ...] [--backend-env NAME=VALUE ...] [--dim 64]
[--redis-db 6]``

Per size N, on a fresh Label Studio server:
1. N tasks ``{"image": "http://127.0.0.1:9/img/<i>.png"}`` are imported as JSON (10,000 per
   request); the answer's ``task_ids`` give the ids (spot-checked against the stored tasks);
2. the backend's embedding cache is written before the backend ever sees the project: one
   part of N random 64-dimensional (``--dim``) embeddings drawn around 10 class centres, under the key
   ``resnet18-random`` (ALFAMIX_ENCODER=resnet18, ALFAMIX_ENCODER_WEIGHTS=none), with the
   tasks' exact image URLs as sources, so nothing is downloaded or embedded;
3. **/next without the backend** (the project's default sampling);
4. the backend (server, Redis db 6 (``--redis-db``), one RQ worker) is connected; once idle, 10 seed labels
   (the true classes) are submitted through /next, and it is waited on again;
5. **annotation -> reordered /next**, ``--repeats`` times: submit the label of the task /next
   serves; time until the project's model version switches (GET /api/projects/{id} every 0.1 s),
   and until the first /next after the switch answers; that answer is then checked against
   ``queue_head[0]`` of the round that made the version (``next_is_head``);
6. **/next with the backend** (its predictions live, Uncertainty sampling), as in step 3.

How /next is timed. Label Studio locks the task it serves to the user and answers the same
task to that user until it is submitted, so one user's repeated calls measure the lock
lookup, not the choice of a task. Both are reported, 30 calls each:
- ``fresh``: 30 annotators, signed up for this purpose (devtools/annotators.py), call /next
  once each: 30 full choices, as annotators arriving one after another see them;
- ``repeat``: the admin calls /next 30 times without submitting (at most one choice, then lock
  reads: in step 6 the admin still holds the task step 5 served last).
The fresh annotators' locks would hide up to 30 tasks from the admin's queue in step 5, so the
server runs with ``TASK_LOCK_TTL=60`` (default one day) and step 5 starts after they expired.
Each ratio is with / without, measured on the same server and project.

Also recorded: prediction rows per round (the round's ``n_predictions``) and in total
(``total_predictions_number``), the round's stage seconds, the backend server's and worker's
RSS (VmRSS at the end, VmHWM the peak), the import and first-connection times, and counts of
"database is locked" and HTTP 500 lines in Label Studio's log, and the load averages before
and after (other work on a shared machine shows there). The servers' logs are copied to
bench/out/scale-logs/<database>-<N>/. Results are merged into
bench/out/scale.json (one entry per size) and printed as a markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis
import requests

from backend.state.files import FileProjectStore
from devtools.annotators import create_annotators
from devtools.backend_process import BackendProcesses
from devtools.label_studio import LabelStudioServer
from devtools.project import DIGITS, Project, backend_status, choices_config, wait_until_idle

OUT = Path(__file__).resolve().parent / "out" / "scale.json"
# Flushed by this benchmark only: tests/redis_databases.py keeps the test modules off the benches' REDIS_DB
# numbers (a test that once shared this benchmark's database wiped its round history).
REDIS_DB = 6
ENCODER_KEY = "resnet18-random"
DIM = 64
IMPORT_CHUNK = 10_000
NEXT_CALLS = 30
SEEDS = 10
LOCK_TTL = 60
POLL = 0.1
STAGES = ("read_seconds", "embed_seconds", "train_seconds", "query_seconds", "push_seconds")
TARGET_P50 = {1_000: 2.0, 10_000: 5.0, 100_000: 10.0}  # annotation -> reordered /next, seconds
TARGET_NEXT_RATIO = 1.5  # /next p99 with the backend over without
log = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument(
        "--label-studio-env",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="extra settings of the Label Studio server, e.g. a feature flag; the results' key names them",
    )
    parser.add_argument(
        "--backend-env",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="extra settings of the backend, e.g. ALFAMIX_TRAINING=projection; the results' key names them",
    )
    parser.add_argument("--dim", type=int, default=DIM, help="dimensions of the prefilled embeddings")
    parser.add_argument("--redis-db", type=int, default=REDIS_DB, help="flushed first; no other user may share it")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    for n_tasks in args.tasks:
        extra_env = dict(item.split("=", 1) for item in args.label_studio_env)
        backend_env = dict(item.split("=", 1) for item in args.backend_env)
        name = f"{args.database}-{n_tasks}" + "".join(
            f"+{tag}" for tag in variant_tags(extra_env, backend_env, args.dim)
        )
        results[name] = run_size(
            name, n_tasks, args.repeats, args.database, args.redis_db, extra_env, backend_env, args.dim
        )
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results, indent=1))
        log.info("%s: %s", name, json.dumps(results[name]))
    print(markdown(results))


def variant_tags(label_studio_env: dict[str, str], backend_env: dict[str, str], dim: int) -> list[str]:
    """What sets a run apart from the plain one, for its key and its table row."""
    tags = list(label_studio_env)  # Label Studio settings by name (feature flags: the value is "true")
    tags += [f"{key}={value}" for key, value in backend_env.items()]
    return tags + ([f"dim={dim}"] if dim != DIM else [])


def run_size(
    name: str,
    n_tasks: int,
    repeats: int,
    database: str,
    redis_db: int,
    extra_env: dict[str, str] | None = None,
    backend_env: dict[str, str] | None = None,
    dim: int = DIM,
) -> dict[str, Any]:
    timeout = min(1800.0, 300 + n_tasks / 50)  # seconds for one wait: 320 s at 1k, 1800 s at 100k
    result: dict[str, Any] = {
        "tasks": n_tasks,
        "repeats": repeats,
        "database": database,
        "label_studio_env": extra_env or {},
        "backend_env": backend_env or {},
        "dim": dim,
        "load_before": os.getloadavg(),
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-scale-") as folder,
        LabelStudioServer(
            database=database, extra_env={"TASK_LOCK_TTL": str(LOCK_TTL), **(extra_env or {})}
        ) as label_studio,
    ):
        annotators = create_annotators(label_studio, 2 * NEXT_CALLS)
        project = Project.create(label_studio, f"scale {n_tasks}", choices_config(DIGITS))
        urls = [f"http://127.0.0.1:9/img/{i}.png" for i in range(n_tasks)]
        started = time.perf_counter()
        task_ids = import_tasks(project, urls)
        result["import_seconds"] = round(time.perf_counter() - started, 1)
        labels = prefill_cache(Path(folder) / "model", project.project_id, task_ids, urls, dim)
        truth = dict(zip(task_ids.tolist(), labels.tolist(), strict=True))
        result["next_without"] = time_next(project, [a.session() for a in annotators[:NEXT_CALLS]])
        locks_expire = time.monotonic() + LOCK_TTL

        redis.Redis(db=redis_db).flushdb()
        env = {
            "LABEL_STUDIO_URL": label_studio.url,
            "LABEL_STUDIO_API_KEY": label_studio.api_key,
            "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
            "MODEL_DIR": str(Path(folder) / "model"),
            "ALFAMIX_ENCODER": "resnet18",
            "ALFAMIX_ENCODER_WEIGHTS": "none",
            "LOG_LEVEL": "INFO",
            **(backend_env or {}),
        }
        with BackendProcesses(Path(folder), env, workers=1) as backend:
            try:
                started = time.perf_counter()
                project.connect(backend.url)
                wait_until_idle(backend.url, project.project_id, timeout=timeout)
                result["connect_idle_seconds"] = round(time.perf_counter() - started, 1)
                project.label_next(truth, SEEDS)
                seeded = wait_until_idle(backend.url, project.project_id, timeout=timeout)["rounds"]
                if not any(r["status"] == "done" for r in seeded):
                    raise AssertionError(f"no round succeeded after the seed labels: {seeded[-1:]}")
                time.sleep(max(0.0, locks_expire - time.monotonic()))
                reorder = [time_reorder(project, backend, truth, timeout) for _ in range(repeats)]
                result["next_with"] = time_next(project, [a.session() for a in annotators[NEXT_CALLS:]])
                result |= summarize(reorder, result["next_without"], result["next_with"])
                result["total_predictions"] = project.settings()["total_predictions_number"]
                result["rounds"] = len(backend_status(backend.url, project.project_id)["rounds"])
                result["rss_mib"] = {name: rss_mib(process.pid) for name, process in backend.processes.items()}
            except BaseException:
                log.error("backend log tail:\n%s", backend.log_tail(80))
                raise
            finally:
                result["backend_log"] = log_counts(backend.log("backend") + backend.log("worker-0"))
                keep_logs(backend.root, label_studio.log_path, OUT.parent / "scale-logs" / name)
        redis.Redis(db=redis_db).flushdb()  # the stopped backend's queue and state
        ls_log = label_studio.log_path.read_text(errors="replace")
        result["label_studio_log"] = {
            "database_is_locked": sum(
                "[ERROR]" in line and "database is locked" in line for line in ls_log.splitlines()
            ),
            "http_500": sum(" 500 " in line for line in ls_log.splitlines()),
            "database_is_locked_excerpts": excerpts(ls_log, "database is locked"),
        }
    result["load_after"] = os.getloadavg()
    return result


def import_tasks(project: Project, urls: list[str]) -> np.ndarray:
    """Imports one task per URL, in order; their ids, (N,) int64, checked on the first and last of each request."""
    ids: list[int] = []
    for start in range(0, len(urls), IMPORT_CHUNK):
        chunk = urls[start : start + IMPORT_CHUNK]
        answer = project.server.session().post(
            f"{project.server.url}/api/projects/{project.project_id}/import",
            params={"return_task_ids": "true"},
            json=[{"image": url} for url in chunk],
            timeout=1800,
        )
        answer.raise_for_status()
        chunk_ids = [int(i) for i in answer.json()["task_ids"]]
        if len(chunk_ids) != len(chunk):
            raise AssertionError(f"importing {len(chunk)} tasks answered {len(chunk_ids)} ids")
        for index in (0, -1):
            stored = project.api("GET", f"/api/tasks/{chunk_ids[index]}")["data"]["image"]
            if stored != chunk[index]:
                raise AssertionError(f"task {chunk_ids[index]} holds {stored!r}, not {chunk[index]!r}")
        ids.extend(chunk_ids)
        log.info("imported %d/%d tasks", len(ids), len(urls))
    return np.asarray(ids, dtype=np.int64)


def prefill_cache(model_dir: Path, project_id: int, task_ids: np.ndarray, urls: list[str], dim: int) -> np.ndarray:
    """Writes the embeddings the backend would compute: 10 Gaussian clusters; returns each task's class."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(DIGITS), size=len(task_ids))  # (N,)
    centres = rng.normal(0.0, 1.0, size=(len(DIGITS), dim))  # (C, D)
    z = (centres[labels] + rng.normal(0.0, 0.6, size=(len(task_ids), dim))).astype(np.float32)  # (N, D)
    order = np.argsort(task_ids)
    cache = FileProjectStore(model_dir, project_id).embeddings(ENCODER_KEY)
    cache.add(task_ids[order], z[order], [urls[i] for i in order])
    return labels


def time_next(project: Project, sessions: list[requests.Session]) -> dict[str, Any]:
    """/next by fresh users (one call each) and by the admin (repeated); seconds."""
    url = f"{project.server.url}/api/projects/{project.project_id}/next"
    with project.server.session() as admin:
        _timed_get(admin, url)  # warm-up, not counted: the server's first /next is slower
    fresh = [_timed_get(session, url) for session in sessions]
    with project.server.session() as admin:
        repeat = [_timed_get(admin, url) for _ in range(len(sessions))]
    for session in sessions:
        session.close()
    return {"fresh": _percentiles(fresh), "repeat": _percentiles(repeat)}


def _timed_get(session: requests.Session, url: str) -> float:
    started = time.perf_counter()
    answer = session.get(url, timeout=120)
    seconds = time.perf_counter() - started
    if answer.status_code != 200:
        raise AssertionError(f"GET {url} answered {answer.status_code}: {answer.text[:300]}")
    return seconds


def time_reorder(project: Project, backend: BackendProcesses, truth: dict[int, int], timeout: float) -> dict[str, Any]:
    """Submit one label; seconds until the model version switches and until /next has answered after it."""
    old = project.settings()["model_version"]
    n_rounds = len(backend_status(backend.url, project.project_id)["rounds"])
    task = project.next_task()
    started = time.perf_counter()
    project.submit(task["id"], [str(truth[task["id"]])])
    deadline = time.monotonic() + timeout
    polls = 0
    while (version := project.settings()["model_version"]) == old:
        if time.monotonic() > deadline:
            raise AssertionError(f"model version still {old!r} {timeout:.0f} s after a label:\n{backend.log_tail()}")
        polls += 1
        if polls % 20 == 0:  # every 2 s or so: a failed round will not switch the version, say why at once
            failed = [
                r for r in backend_status(backend.url, project.project_id)["rounds"][n_rounds:] if r["status"] != "done"
            ]
            if failed:
                raise AssertionError(f"a round after the label failed: {failed[0]}\n{backend.log_tail()}")
        time.sleep(POLL)
    switch_seconds = time.perf_counter() - started
    served = project.next_task()
    next_seconds = time.perf_counter() - started
    live_after = project.settings()["model_version"]
    status = wait_until_idle(backend.url, project.project_id, timeout=timeout)
    by_version = {r.get("model_version"): r for r in status["rounds"]}
    if version not in by_version:
        raise AssertionError(f"version {version!r} is live but no round record names it, only {list(by_version)}")
    heads = {by_version[v]["queue_head"][0] for v in (version, live_after) if v in by_version}
    made = by_version[version]
    return {
        "switch_seconds": round(switch_seconds, 3),
        "next_seconds": round(next_seconds, 3),
        "next_is_head": served["id"] in heads,
        "rounds_after_label": len(status["rounds"]) - status["rounds"].index(made),
        "n_predictions": made.get("n_predictions"),
        "stages": {k: made.get(k) for k in STAGES},
    }


def summarize(reorder: list[dict[str, Any]], without: dict[str, Any], with_: dict[str, Any]) -> dict[str, Any]:
    return {
        "switch": _percentiles([r["switch_seconds"] for r in reorder]),
        "annotation_to_next": _percentiles([r["next_seconds"] for r in reorder]),
        "next_is_head": [r["next_is_head"] for r in reorder],
        "rounds_after_label": [r["rounds_after_label"] for r in reorder],
        "predictions_per_round": [r["n_predictions"] for r in reorder],
        "stages_median": {k: _median([r["stages"][k] for r in reorder if r["stages"][k] is not None]) for k in STAGES},
        "next_p99_ratio": {k: round(with_[k]["p99"] / without[k]["p99"], 2) for k in ("fresh", "repeat")},
        "next_p50_ratio": {k: round(with_[k]["p50"] / without[k]["p50"], 2) for k in ("fresh", "repeat")},
        "reorder": reorder,
    }


def rss_mib(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: round(int(fields[k].split()[0]) / 1024, 1) for k in ("VmRSS", "VmHWM")}


def log_counts(text: str) -> dict[str, int]:
    lines = text.splitlines()
    return {
        "error_lines": sum(" ERROR " in line or "Traceback" in line for line in lines),
        "warning_lines": sum(" WARNING " in line for line in lines),
    }


def keep_logs(backend_root: Path, label_studio_log: Path, folder: Path) -> None:
    """Copies the server logs out of the temporary folders, for reading after the run."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in [label_studio_log, *backend_root.glob("*.log")]:
        shutil.copyfile(path, folder / path.name)


def excerpts(text: str, needle: str, before: int = 4, limit: int = 5) -> list[str]:
    """The first ``limit`` lines holding ``needle``, each with the ``before`` lines ahead of it (300 chars a line)."""
    lines = text.splitlines()
    hits = [i for i, line in enumerate(lines) if needle in line][:limit]
    return ["\n".join(line[:300] for line in lines[max(0, i - before) : i + 1]) for i in hits]


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 3) if values else None


def _percentiles(seconds: list[float]) -> dict[str, float]:
    return {
        "p50": round(float(np.percentile(seconds, 50)), 3),
        "p99": round(float(np.percentile(seconds, 99)), 3),
        "n": len(seconds),
    }


def markdown(results: dict[str, Any]) -> str:
    targets = ", ".join(f"<= {s:g} s at {n // 1000}k" for n, s in TARGET_P50.items())
    rows = [
        f"Targets: p50 annotation -> reordered /next {targets}; /next p99 with the backend "
        f"<= {TARGET_NEXT_RATIO}x without.",
        "",
        "| N | db | label->/next p50/p99 s | /next fresh w/o p50/p99 | with p50/p99 | p99 ratio "
        "| /next repeat w/o p50/p99 | with p50/p99 | p99 ratio | rows/round | total rows "
        "| RSS server/worker MiB (peak) | stages read/embed/train/query/push s | import s |",
        "|" + "---|" * 14,
    ]
    for r in results.values():
        if "annotation_to_next" not in r:
            continue
        rss = r["rss_mib"]
        tags = variant_tags(r.get("label_studio_env", {}), r.get("backend_env", {}), r.get("dim", DIM))
        database = r["database"] + "".join(f" +{tag}" for tag in tags)
        rows.append(
            f"| {r['tasks']} | {database} | {_pair(r['annotation_to_next'])} "
            f"| {_pair(r['next_without']['fresh'])} | {_pair(r['next_with']['fresh'])} "
            f"| {r['next_p99_ratio']['fresh']} "
            f"| {_pair(r['next_without']['repeat'])} | {_pair(r['next_with']['repeat'])} "
            f"| {r['next_p99_ratio']['repeat']} "
            f"| {'/'.join(str(n) for n in r['predictions_per_round'])} | {r['total_predictions']} "
            f"| {rss['backend']['VmRSS']:.0f} ({rss['backend']['VmHWM']:.0f}) / "
            f"{rss['worker-0']['VmRSS']:.0f} ({rss['worker-0']['VmHWM']:.0f}) "
            f"| {'/'.join(str(v) for v in r['stages_median'].values())} | {r['import_seconds']} |"
        )
    return "\n".join(rows)


def _pair(figures: dict[str, float]) -> str:
    return f"{figures['p50']:.3f} / {figures['p99']:.3f}"


if __name__ == "__main__":
    main()
