"""Jobs: plain functions taking a project id. RQ workers import them by name; the embedded
default calls ``execute`` from a thread. Either way the coordinator's rule applies."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from rq import get_current_job

from backend.context import Context, build_context
from backend.coordination import Coordinator, RedisCoordinator
from backend.dispatch import JobRequest, RQDispatcher
from backend.embedder import embed_missing, encoder_key, load_encoder, spread
from backend.errors import BackendError
from backend.rounds import StageReporter, ignore_stage, prune_predictions, read_ledger, run_round
from backend.settings import Settings
from backend.webhook_auth import secure_webhooks

logger = logging.getLogger(__name__)

_context: Context | None = None
EMBED_JOB_TASKS = 2048  # tasks one embed job takes on before it yields to pending rounds


def embed_new_tasks(context: Context, project_id: int, stage: StageReporter = ignore_stage) -> dict[str, Any]:
    """Embed up to EMBED_JOB_TASKS tasks the cache lacks; "more" asks for another embed job, so
    that rounds requested meanwhile run in between, and "needs_queue" asks for the cold-start
    round of a project that has no queue yet."""
    stage("reading")
    settings = context.settings
    ledger, _, snapshot, _ = read_ledger(context, project_id)
    store = context.store(project_id)
    report = embed_missing(
        project_id,
        spread(snapshot.tasks, project_id),
        store.embeddings(encoder_key(settings)),
        load_encoder(settings),
        context.fetcher,
        settings.max_image_pixels,
        progress=lambda done, total: stage("embedding", done, total),
        limit=EMBED_JOB_TASKS,
    )
    ledger.note_skipped(report.failed)
    ledger.save()
    return {
        "status": "done",
        "n_embedded": report.embedded,
        "n_skipped": len(report.failed),
        "n_left": report.left,
        "more": report.left > 0,
        "needs_queue": report.embedded > 0 and store.live() is None,
    }


def prune_old_predictions(context: Context, project_id: int, stage: StageReporter = ignore_stage) -> dict[str, Any]:
    """Delete this backend's predictions of versions it no longer keeps, for PRUNE_SECONDS at most."""
    stage("pruning")
    report = prune_predictions(context, project_id, keep=set(context.store(project_id).versions()))
    return {"status": "done", **report, "more": report["n_left"] > 0}


JOBS: dict[str, Callable[[Context, int, StageReporter], dict[str, Any]]] = {
    "round": run_round,
    "embed": embed_new_tasks,
    "prune": prune_old_predictions,
    "secure_webhooks": secure_webhooks,
}


def follow_ups(kind: str, result: dict[str, Any]) -> list[str]:
    """Jobs to request when one ends: a new queue leaves old predictions to prune, tasks a round
    found without embeddings ask for an embed job, the first embedded tasks of a project with no
    queue ask for the round that pushes its cold-start queue, and a job that stopped at its
    limit ("more") asks for itself again."""
    kinds = ["prune"] if kind == "round" and result.get("model_version") else []
    if kind == "round" and result.get("n_unembedded"):
        kinds.append("embed")
    if kind == "embed" and result.get("needs_queue"):
        kinds.append("round")
    return [*kinds, kind] if result.get("more") else kinds


def execute(
    kind: str, project_id: int, context: Context, coordinator: Coordinator, request: JobRequest
) -> dict[str, Any]:
    """Run one job under the project's lock; a failed round is recorded in the history, then re-raised.

    Follow-up jobs are requested before the lock is released, so the project never looks idle
    between the two."""
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
            for follow_up in follow_ups(kind, result):
                request(follow_up, project_id)
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


def rq_prune(project_id: int) -> dict[str, Any]:
    return _rq_execute("prune", project_id)


def rq_secure_webhooks(project_id: int) -> dict[str, Any]:
    return _rq_execute("secure_webhooks", project_id)


def _rq_execute(kind: str, project_id: int) -> dict[str, Any]:
    global _context
    job = get_current_job()
    assert job is not None, "rq_* functions run inside an RQ worker"
    if _context is None:
        _context = build_context(Settings.from_env(), job.connection)
    coordinator = RedisCoordinator(job.connection, _context.settings.round_timeout, _context.settings.lock_seconds)
    request = RQDispatcher(job.connection, _context.settings).request
    return execute(kind, int(project_id), _context, coordinator, request)
