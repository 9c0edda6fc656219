"""De-duplication of jobs: one pending mark per kind and project, one lock holder per project."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from redis import Redis

from backend import coordination
from backend.coordination import Coordinator, LocalCoordinator, RedisCoordinator

WAIT = 5.0  # seconds; only reached when a test is about to fail


@pytest.fixture
def redis_prefix(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Redis, str]]:
    connection = Redis(host="127.0.0.1", port=6379, db=15)
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
