"""The catch-up asks again for rounds that were requested but never finished, and for deferred events."""

from __future__ import annotations

import threading

from backend.jobs.coordination import LocalCoordinator
from backend.jobs.dispatch import JobRequest, QueueUnavailableError, ThreadDispatcher
from backend.jobs.reconciler import Reconciler


class Runs:
    """Stands in for jobs.execute: records each job, optionally failing it."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, int]] = []
        self.fail = False
        self.finished = threading.Semaphore(0)

    def __call__(self, kind: str, project_id: int, coordinator: LocalCoordinator, request: JobRequest) -> None:
        with coordinator.project_lock(project_id):
            coordinator.clear_pending(kind, project_id)
            covered = coordinator.events(project_id)
            self.jobs.append((kind, project_id))
            try:
                if self.fail:
                    raise RuntimeError("Label Studio is down")
                coordinator.round_done(project_id, covered)
            finally:
                self.finished.release()


def test_a_failed_round_is_requested_again_and_a_finished_one_is_not() -> None:
    runs = Runs()
    dispatcher = ThreadDispatcher(runs)
    reconciler = Reconciler(dispatcher, interval=3600)
    runs.fail = True
    dispatcher.request("round", 4)
    assert runs.finished.acquire(timeout=5)
    assert dispatcher.coordinator.behind(4)

    runs.fail = False
    assert reconciler.run_once() == [4]
    assert runs.finished.acquire(timeout=5)
    assert not dispatcher.coordinator.behind(4)
    assert reconciler.run_once() == []
    assert runs.jobs == [("round", 4), ("round", 4)]
    dispatcher.close()


class RecordingDispatcher:
    """Records round requests; ``down`` makes it answer as if Redis were unreachable."""

    def __init__(self) -> None:
        self.coordinator = LocalCoordinator()
        self.requested: list[int] = []
        self.down = False

    def request(self, kind: str, project_id: int) -> bool:
        if self.down:
            raise QueueUnavailableError("the job queue (Redis) is unavailable: ConnectionError")
        self.requested.append(project_id)
        return True

    def status(self, project_id: int) -> dict[str, bool]:
        return {}

    def close(self) -> None:
        pass


def test_a_project_with_a_round_pending_or_running_is_left_alone() -> None:
    dispatcher = RecordingDispatcher()
    coordinator = dispatcher.coordinator
    coordinator.note_event(1)
    coordinator.note_event(2)
    coordinator.mark_pending("round", 1)
    with coordinator.project_lock(2):
        assert Reconciler(dispatcher, 3600).run_once() == []
    assert Reconciler(dispatcher, 3600).run_once() == [2]


def test_deferred_events_are_requested_once_the_queue_answers_again() -> None:
    dispatcher = RecordingDispatcher()
    dispatcher.down = True
    reconciler = Reconciler(dispatcher, 3600)
    reconciler.defer(9)
    assert reconciler.run_once() == []  # still down: kept for later
    dispatcher.down = False
    assert reconciler.run_once() == [9]
    assert reconciler.run_once() == []
    assert dispatcher.requested == [9]
