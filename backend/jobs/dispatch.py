"""Hand jobs to whoever runs them: RQ workers (REDIS_URL set) or a thread of the server (default).

The web process only marks and enqueues; it never imports the training code for a round.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Protocol

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

from backend.errors import BackendError
from backend.jobs.coordination import Coordinator, LocalCoordinator, RedisCoordinator
from backend.jobs.registry import JobKind
from backend.settings import Settings

logger = logging.getLogger(__name__)

RQ_QUEUE = "alfamix"  # a queue name of our own, apart from anything Label Studio might run
RQ_ENTRY_POINT = "backend.jobs.runner.rq_job"  # (kind, project_id)
JobRequest = Callable[[JobKind, int], bool]  # (kind, project_id) -> False when one is already pending


class QueueUnavailableError(BackendError):
    status_code = 503


class Dispatcher(Protocol):
    @property
    def coordinator(self) -> Coordinator: ...

    def request(self, kind: JobKind, project_id: int) -> bool:
        """Ask for a job; False when one of that kind is already pending for the project."""

    def status(self, project_id: int) -> dict[str, bool]:
        """Whether a job of each kind is pending for the project, and whether one runs now."""

    def close(self) -> None: ...


def _status(coordinator: Coordinator, project_id: int) -> dict[str, bool]:
    pending = {f"{kind}_pending": coordinator.is_pending(kind, project_id) for kind in JobKind}
    return {**pending, "running": coordinator.is_locked(project_id)}


def _request(coordinator: Coordinator, kind: JobKind, project_id: int, enqueue: Callable[[], None]) -> bool:
    """Count the event, then enqueue unless a job of this kind is already pending."""
    if kind == JobKind.ROUND:
        coordinator.note_event(project_id)
    if not coordinator.mark_pending(kind, project_id):
        return False
    try:
        enqueue()
    except BaseException:
        coordinator.clear_pending(kind, project_id)
        raise
    return True


class RQDispatcher:
    def __init__(self, connection: Redis, settings: Settings) -> None:
        self.coordinator = RedisCoordinator(connection, settings.round_timeout, settings.lock_seconds)
        self.queue = Queue(RQ_QUEUE, connection=connection)
        self.job_timeout = settings.round_timeout

    def request(self, kind: JobKind, project_id: int) -> bool:
        def enqueue() -> None:
            self.queue.enqueue(
                RQ_ENTRY_POINT,
                str(kind),
                project_id,
                job_timeout=self.job_timeout,
                description=f"{kind} project={project_id}",
            )

        try:
            return _request(self.coordinator, kind, project_id, enqueue)
        except RedisError as error:
            raise QueueUnavailableError(f"the job queue (Redis) is unavailable: {type(error).__name__}") from None

    def status(self, project_id: int) -> dict[str, bool]:
        try:
            return _status(self.coordinator, project_id)
        except RedisError as error:
            raise QueueUnavailableError(f"the job queue (Redis) is unavailable: {type(error).__name__}") from None

    def close(self) -> None:
        self.queue.connection.close()


class ThreadDispatcher:
    """Runs jobs one at a time in a daemon thread; ``run(kind, project_id, coordinator, request)`` does the
    work, and ``request`` asks for follow-up jobs."""

    def __init__(self, run: Callable[[JobKind, int, LocalCoordinator, JobRequest], object]) -> None:
        self.coordinator = LocalCoordinator()
        self._run = run
        self._jobs: queue.Queue[tuple[JobKind, int] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="alfamix-jobs", daemon=True)
        self._thread.start()

    def request(self, kind: JobKind, project_id: int) -> bool:
        return _request(self.coordinator, kind, project_id, lambda: self._jobs.put((kind, project_id)))

    def status(self, project_id: int) -> dict[str, bool]:
        return _status(self.coordinator, project_id)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            kind, project_id = job
            try:
                self._run(kind, project_id, self.coordinator, self.request)
            except Exception as error:  # the thread must survive a failed job
                logger.debug("project %s: %s job ended with %s", project_id, kind, type(error).__name__)
                self.coordinator.clear_pending(kind, project_id)


def build_dispatcher(settings: Settings, connection: Redis | None) -> Dispatcher:
    if connection is not None:
        return RQDispatcher(connection, settings)
    return ThreadDispatcher(_embedded_runner(settings))


def _embedded_runner(settings: Settings) -> Callable[[JobKind, int, LocalCoordinator, JobRequest], object]:
    context = None

    def run(kind: JobKind, project_id: int, coordinator: LocalCoordinator, request: JobRequest) -> object:
        nonlocal context
        # The training stack loads with the first job, not when the server starts.
        from backend.jobs.runner import execute
        from backend.pipeline.context import build_context

        if context is None:
            try:
                context = build_context(settings)
            except BackendError as error:
                logger.error("project %s: %s job not run: %s", project_id, kind, error)
                raise
        return execute(kind, project_id, context, coordinator, request)

    return run
