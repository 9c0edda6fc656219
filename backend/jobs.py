"""Jobs: plain functions taking a project id. RQ workers import them by name; the embedded
default calls ``execute`` from a thread. Either way the coordinator's rule applies."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from rq import get_current_job

from backend.annotations import snapshot_tasks
from backend.context import Context, build_context
from backend.coordination import Coordinator, RedisCoordinator
from backend.embedder import embed_missing, encoder_key, load_encoder
from backend.errors import BackendError
from backend.label_config import parse_label_config
from backend.rounds import StageReporter, ignore_stage, run_round
from backend.settings import Settings
from backend.webhook_auth import secure_webhooks

logger = logging.getLogger(__name__)

_context: Context | None = None


def embed_new_tasks(context: Context, project_id: int, stage: StageReporter = ignore_stage) -> dict[str, Any]:
    """Embed tasks the cache lacks (after an import), so the next round only trains and ranks."""
    stage("reading")
    settings = context.settings
    spec = parse_label_config(context.client.get_project(project_id).get("label_config") or "")
    snapshot = snapshot_tasks(project_id, context.client.iter_tasks(project_id), spec)
    cache = context.store(project_id).embeddings(encoder_key(settings))
    report = embed_missing(
        project_id,
        snapshot.tasks,
        cache,
        load_encoder(settings),
        context.fetcher,
        settings.max_image_pixels,
        progress=lambda done, total: stage("embedding", done, total),
    )
    return {"status": "done", "n_embedded": report.embedded, "n_skipped": len(report.failed)}


JOBS: dict[str, Callable[[Context, int, StageReporter], dict[str, Any]]] = {
    "round": run_round,
    "embed": embed_new_tasks,
    "secure_webhooks": secure_webhooks,
}


def execute(kind: str, project_id: int, context: Context, coordinator: Coordinator) -> dict[str, Any]:
    """Run one job under the project's lock; a failed round is recorded in the history, then re-raised."""
    with coordinator.project_lock(project_id):
        coordinator.clear_pending(kind, project_id)
        started = time.time()
        covered = coordinator.events(project_id)  # every request counted so far is covered by this job
        try:

            def report(name: str, done: int | None = None, total: int | None = None) -> None:
                coordinator.set_stage(project_id, {"name": name, "done": done, "total": total})

            result = JOBS[kind](context, project_id, report)
            if kind == "round":
                coordinator.round_done(project_id, covered)
            return result
        except Exception as error:
            if isinstance(error, BackendError):
                logger.error("project %s: %s job failed: %s", project_id, kind, error)
            else:  # a bug: keep the traceback
                logger.exception("project %s: %s job crashed", project_id, kind)
            if kind == "round":
                context.store(project_id).append_round(
                    {"status": "failed", "error": str(error)[:500], "started_at": started, "finished_at": time.time()}
                )
            raise
        finally:
            coordinator.set_stage(project_id, None)


# RQ entry points: enqueued by name, so the web process never imports this module.
def rq_round(project_id: int) -> dict[str, Any]:
    return _rq_execute("round", project_id)


def rq_embed(project_id: int) -> dict[str, Any]:
    return _rq_execute("embed", project_id)


def rq_secure_webhooks(project_id: int) -> dict[str, Any]:
    return _rq_execute("secure_webhooks", project_id)


def _rq_execute(kind: str, project_id: int) -> dict[str, Any]:
    global _context
    job = get_current_job()
    assert job is not None, "rq_* functions run inside an RQ worker"
    if _context is None:
        _context = build_context(Settings.from_env(), job.connection)
    coordinator = RedisCoordinator(job.connection, _context.settings.round_timeout, _context.settings.lock_seconds)
    return execute(kind, int(project_id), _context, coordinator)
