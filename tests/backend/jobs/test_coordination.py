"""De-duplication of jobs: one pending mark per kind and project, one lock holder per project."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from redis import Redis

from backend.jobs import coordination
from backend.jobs.coordination import Coordinator, LocalCoordinator, RedisCoordinator
from backend.jobs.reconciler import Reconciler

WAIT = 5.0  # seconds; only reached when a test is about to fail


@pytest.fixture
def redis_prefix(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Redis, str]]:
    connection = Redis.from_url(redis_url)
    prefix = f"alfamix-test-{uuid.uuid4().hex}"
    monkeypatch.setattr(coordination, "KEY_PREFIX", prefix)
    yield connection, prefix
    keys = list(connection.scan_iter(f"{prefix}:*"))
    if keys:
        connection.delete(*keys)
    connection.close()


@pytest.fixture(params=["local", "redis"])
def coordinator(request: pytest.FixtureRequest) -> Coordinator:
    if request.param == "local":
        return LocalCoordinator()
    connection, _ = request.getfixturevalue("redis_prefix")
    return RedisCoordinator(connection, lock_timeout=30)


def test_mark_pending_is_true_once_until_cleared(coordinator: Coordinator) -> None:
    marks = [coordinator.mark_pending("train", 1), coordinator.mark_pending("train", 1)]
    pending_before = coordinator.is_pending("train", 1)
    coordinator.clear_pending("train", 1)

    assert marks == [True, False]
    assert pending_before is True
    assert coordinator.is_pending("train", 1) is False
    assert coordinator.mark_pending("train", 1) is True


def test_kinds_and_projects_are_marked_independently(coordinator: Coordinator) -> None:
    assert coordinator.mark_pending("train", 1) is True

    assert [
        coordinator.mark_pending("predict", 1),
        coordinator.mark_pending("train", 2),
        coordinator.is_pending("predict", 2),
    ] == [True, True, False]


def test_project_lock_excludes_a_second_holder_until_released(coordinator: Coordinator) -> None:
    order: list[str] = []
    first_in, release_first, second_in = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with coordinator.project_lock(1):
            order.append("first in")
            first_in.set()
            release_first.wait(WAIT)
            order.append("first out")

    def second() -> None:
        first_in.wait(WAIT)
        with coordinator.project_lock(1):
            order.append("second in")
            second_in.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    assert first_in.wait(WAIT)
    blocked = not second_in.wait(0.3)
    release_first.set()
    for thread in threads:
        thread.join(WAIT)

    assert blocked
    assert order == ["first in", "first out", "second in"]


def test_locks_of_different_projects_do_not_block_each_other(coordinator: Coordinator) -> None:
    first_in, release_first, other_in = threading.Event(), threading.Event(), threading.Event()

    def hold_project_1() -> None:
        with coordinator.project_lock(1):
            first_in.set()
            release_first.wait(WAIT)

    def enter_project_2() -> None:
        with coordinator.project_lock(2):
            other_in.set()

    holder = threading.Thread(target=hold_project_1)
    holder.start()
    assert first_in.wait(WAIT)
    other = threading.Thread(target=enter_project_2)
    other.start()
    entered_while_held = other_in.wait(WAIT)
    release_first.set()
    holder.join(WAIT)
    other.join(WAIT)

    assert entered_while_held


def test_redis_pending_mark_expires_after_the_lock_timeout(redis_prefix: tuple[Redis, str]) -> None:
    connection, prefix = redis_prefix
    coordinator = RedisCoordinator(connection, lock_timeout=1)

    assert coordinator.mark_pending("train", 1) is True
    assert 0 < connection.pttl(f"{prefix}:pending:train:1") <= 1000
    time.sleep(1.5)

    assert coordinator.is_pending("train", 1) is False
    assert coordinator.mark_pending("train", 1) is True


def test_redis_lock_released_after_the_block_leaves_no_key(redis_prefix: tuple[Redis, str]) -> None:
    connection, prefix = redis_prefix
    coordinator = RedisCoordinator(connection, lock_timeout=30)

    with coordinator.project_lock(1):
        held = connection.exists(f"{prefix}:lock:1")

    assert (held, connection.exists(f"{prefix}:lock:1")) == (1, 0)


# --- catch-up bookkeeping, stages and lock liveness ------------------------------------------


def test_a_project_is_behind_until_a_round_covering_its_events_is_done(coordinator: Coordinator) -> None:
    assert not coordinator.behind(7) and coordinator.projects() == []
    assert [coordinator.note_event(7), coordinator.note_event(7)] == [1, 2]
    assert coordinator.behind(7) and coordinator.projects() == [7]
    coordinator.round_done(7, 1)  # a round that started after the first event
    assert coordinator.behind(7)
    coordinator.round_done(7, 2)
    assert not coordinator.behind(7)
    coordinator.round_done(7, 1)  # an older round finishing late does not go back
    assert not coordinator.behind(7) and coordinator.events(7) == 2


def test_the_stage_of_a_running_job_is_visible_until_cleared(coordinator: Coordinator) -> None:
    coordinator.set_stage(3, {"name": "embedding", "done": 340, "total": 1000})
    assert coordinator.stage(3) == {"name": "embedding", "done": 340, "total": 1000} and coordinator.stage(4) is None
    coordinator.set_stage(3, None)
    assert coordinator.stage(3) is None


def test_the_heartbeat_keeps_a_lock_alive_past_its_ttl(redis_prefix: tuple[Redis, str]) -> None:
    connection, _ = redis_prefix
    coordinator = RedisCoordinator(connection, lock_timeout=30, lock_ttl=3)
    with coordinator.project_lock(5):
        time.sleep(4.5)  # longer than the TTL: only the heartbeat keeps the key
        assert coordinator.is_locked(5)
        assert 0 < connection.pttl(f"{coordination.KEY_PREFIX}:lock:5") <= 3000
    assert not coordinator.is_locked(5)


def test_a_dead_holders_lock_expires_after_its_ttl(redis_prefix: tuple[Redis, str]) -> None:
    connection, _ = redis_prefix
    # A lock taken as a killed worker leaves it: no heartbeat, nobody releases it.
    connection.lock(f"{coordination.KEY_PREFIX}:lock:6", timeout=2).acquire()
    coordinator = RedisCoordinator(connection, lock_timeout=10, lock_ttl=2)
    started = time.monotonic()
    with coordinator.project_lock(6):
        waited = time.monotonic() - started
    assert 1.0 < waited < 3.5


class RecordingDispatcher:
    """Records the rounds the reconciler requests."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self.requested: list[int] = []

    def request(self, kind: str, project_id: int) -> bool:
        self.requested.append(project_id)
        return True


def test_redis_reports_its_state_lost_once_per_emptying(redis_prefix: tuple[Redis, str]) -> None:
    connection, prefix = redis_prefix
    coordinator = RedisCoordinator(connection, lock_timeout=30)
    assert [coordinator.state_was_lost(), coordinator.state_was_lost()] == [True, False]
    connection.delete(*connection.scan_iter(f"{prefix}:*"))  # Redis restarted without its data
    assert [coordinator.state_was_lost(), coordinator.state_was_lost()] == [True, False]


def test_an_empty_redis_at_start_is_no_loss_but_one_emptied_later_is(redis_prefix: tuple[Redis, str]) -> None:
    connection, prefix = redis_prefix
    dispatcher = RecordingDispatcher(RedisCoordinator(connection, lock_timeout=30))
    reconciler = Reconciler(dispatcher, interval=3600)  # type: ignore[arg-type]
    reconciler.start()
    try:
        reconciler.seen(5)  # a webhook for project 5 soon after the start
        assert reconciler.run_once() == []
        connection.delete(*connection.scan_iter(f"{prefix}:*"))
        assert reconciler.run_once() == [5]
        assert reconciler.run_once() == []
        assert dispatcher.requested == [5]
    finally:
        reconciler.stop()
