"""Run one job under the project's lock, in an RQ worker or the embedded job thread.

Either way the coordinator's rules apply (backend/jobs/coordination.py), a failed round is
recorded in the project's history, and the follow-up jobs are requested before the lock
is released, so the project never looks idle between the two.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rq import get_current_job

from backend.errors import BackendError
from backend.jobs.coordination import Coordinator, RedisCoordinator
from backend.jobs.dispatch import JobRequest, RQDispatcher
from backend.jobs.registry import JobKind, follow_ups, job_function
from backend.pipeline.context import Context, build_context
from backend.settings import Settings
from backend.state.records import RoundRecord, Stage

logger = logging.getLogger(__name__)

_worker_context: Context | None = None  # an RQ worker builds it on its first job and keeps it


def execute(
    kind: JobKind, project_id: int, context: Context, coordinator: Coordinator, request: JobRequest
) -> dict[str, Any]:
    with coordinator.project_lock(project_id):
        coordinator.clear_pending(kind, project_id)
        started = time.time()
        covered = coordinator.events(project_id)  # every request counted so far is covered by this job

        def report(name: Stage, done: int | None = None, total: int | None = None) -> None:
            coordinator.set_stage(project_id, {"name": str(name), "done": done, "total": total})

        try:
            result = job_function(kind)(context, project_id, report)
            if kind == JobKind.ROUND:
                coordinator.round_done(project_id, covered)
            for follow_up in follow_ups(kind, result):
                request(follow_up, project_id)
            return result
        except Exception as error:
            if isinstance(error, BackendError):
                logger.error("project %s: %s job failed: %s", project_id, kind, error)
            else:  # a bug: keep the traceback
                logger.exception("project %s: %s job crashed", project_id, kind)
            if kind == JobKind.ROUND:
                failed = RoundRecord(
                    status="failed", error=str(error)[:500], started_at=started, finished_at=time.time()
                )
                context.store(project_id).append_round(failed)
            raise
        finally:
            coordinator.set_stage(project_id, None)


def rq_job(kind: str, project_id: int) -> dict[str, Any]:
    """The one RQ entry point: enqueued by name, so the web process never imports this module."""
    global _worker_context
    job = get_current_job()
    assert job is not None, "rq_job runs inside an RQ worker"
    if _worker_context is None:
        _worker_context = build_context(Settings.from_env(), job.connection)
    settings = _worker_context.settings
    coordinator = RedisCoordinator(job.connection, settings.round_timeout, settings.lock_seconds)
    request = RQDispatcher(job.connection, settings).request
    return execute(JobKind(kind), int(project_id), _worker_context, coordinator, request)
