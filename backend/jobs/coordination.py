"""The rules for jobs, in one place.

- De-duplication: per project and job kind at most one job pending; per project one job
  running at a time (they share the project's lock). A job clears its pending mark only
  once it holds the lock, so every event before it reads Label Studio is covered by it.
- Liveness: a running job keeps its lock alive with a heartbeat; if its worker dies, the
  lock expires after ``lock_ttl`` seconds and the next round can start.
- Catch-up: every round request counts an event; a round that finishes records the count
  it started from. A project whose events outrun its finished rounds (a worker killed
  mid-round, Label Studio down, a lost job) gets a new round from the reconciler.

Redis holds all of this when workers are separate processes; the embedded default keeps
it in memory.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from redis import Redis
from redis.exceptions import LockNotOwnedError, RedisError
from redis.lock import Lock

from backend.state.redis_state import KEY_PREFIX

logger = logging.getLogger(__name__)


class Coordinator(Protocol):
    def mark_pending(self, kind: str, project_id: int) -> bool:
        """True if no job of this kind was pending for the project (the caller must enqueue one)."""

    def clear_pending(self, kind: str, project_id: int) -> None: ...

    def is_pending(self, kind: str, project_id: int) -> bool: ...

    def project_lock(self, project_id: int) -> AbstractContextManager[None]: ...

    def is_locked(self, project_id: int) -> bool:
        """True while a job of the project runs."""

    def note_event(self, project_id: int) -> int:
        """Count one round request; returns the new count."""

    def events(self, project_id: int) -> int: ...

    def round_done(self, project_id: int, events: int) -> None:
        """A round that started when ``events`` requests had been counted has finished."""

    def behind(self, project_id: int) -> bool:
        """True when requests were counted that no finished round has covered."""

    def projects(self) -> list[int]:
        """Projects that ever had a round requested."""

    def set_stage(self, project_id: int, stage: dict[str, Any] | None) -> None:
        """What the running job does: {"name": "embedding", "done": 340, "total": 1000}; None when idle."""

    def stage(self, project_id: int) -> dict[str, Any] | None: ...

    def state_was_lost(self) -> bool:
        """True once after the shared state was found empty (a Redis restarted without persistence)."""


class RedisCoordinator:
    def __init__(self, connection: Redis, lock_timeout: int, lock_ttl: int = 60) -> None:
        self.connection = connection
        self.lock_timeout = lock_timeout  # how long a job waits for the lock, and a pending mark lives
        self.lock_ttl = lock_ttl  # how long a lock outlives a dead worker

    def mark_pending(self, kind: str, project_id: int) -> bool:
        return bool(self.connection.set(self._key("pending", kind, project_id), 1, nx=True, ex=self.lock_timeout))

    def clear_pending(self, kind: str, project_id: int) -> None:
        self.connection.delete(self._key("pending", kind, project_id))

    def is_pending(self, kind: str, project_id: int) -> bool:
        return bool(self.connection.exists(self._key("pending", kind, project_id)))

    def is_locked(self, project_id: int) -> bool:
        return bool(self.connection.exists(self._key("lock", project_id)))

    @contextmanager
    def project_lock(self, project_id: int) -> Iterator[None]:
        # thread_local=False: the heartbeat thread extends the lock the job's thread holds.
        lock = self.connection.lock(
            self._key("lock", project_id),
            timeout=self.lock_ttl,
            blocking_timeout=self.lock_timeout,
            thread_local=False,
        )
        if not lock.acquire():
            raise TimeoutError(f"project {project_id}: lock still held after {self.lock_timeout} s")
        stop = threading.Event()
        heartbeat = threading.Thread(target=self._keep_alive, args=(lock, stop, project_id), daemon=True)
        heartbeat.start()
        try:
            yield
        finally:
            stop.set()
            heartbeat.join()
            try:
                lock.release()
            except LockNotOwnedError:  # the heartbeat could not reach Redis for a whole lock_ttl
                logger.warning("project %s: the lock had expired before the job ended", project_id)

    def note_event(self, project_id: int) -> int:
        with self.connection.pipeline() as pipe:
            pipe.incr(self._key("events", project_id))
            pipe.sadd(self._key("projects"), project_id)
            count, _ = pipe.execute()
        return int(count)

    def events(self, project_id: int) -> int:
        return int(self.connection.get(self._key("events", project_id)) or 0)

    def round_done(self, project_id: int, events: int) -> None:
        # One round runs at a time per project (the lock), so read-then-write cannot race.
        if events > int(self.connection.get(self._key("done", project_id)) or 0):
            self.connection.set(self._key("done", project_id), events)

    def behind(self, project_id: int) -> bool:
        events, done = self.connection.mget(self._key("events", project_id), self._key("done", project_id))
        return int(events or 0) > int(done or 0)

    def projects(self) -> list[int]:
        return sorted(int(p) for p in self.connection.smembers(self._key("projects")))

    def set_stage(self, project_id: int, stage: dict[str, Any] | None) -> None:
        if stage is None:
            self.connection.delete(self._key("stage", project_id))
        else:
            self.connection.set(self._key("stage", project_id), json.dumps(stage), ex=self.lock_timeout)

    def stage(self, project_id: int) -> dict[str, Any] | None:
        value = self.connection.get(self._key("stage", project_id))
        return json.loads(value) if value else None

    def state_was_lost(self) -> bool:
        # The marker lives as long as Redis's data: if SET NX succeeds, everything else is gone too.
        return bool(self.connection.set(self._key("state-marker"), 1, nx=True))

    def _keep_alive(self, lock: Lock, stop: threading.Event, project_id: int) -> None:
        while not stop.wait(self.lock_ttl / 3):
            try:
                lock.extend(self.lock_ttl, replace_ttl=True)
            except RedisError as error:  # LockError and LockNotOwnedError included
                logger.warning("project %s: lock heartbeat failed: %s", project_id, type(error).__name__)

    @staticmethod
    def _key(*parts: object) -> str:
        return ":".join((KEY_PREFIX, *(str(part) for part in parts)))


class LocalCoordinator:
    """The same rules inside one process (the embedded default, no Redis)."""

    def __init__(self) -> None:
        self._pending: set[tuple[str, int]] = set()
        self._locks: dict[int, threading.Lock] = {}
        self._events: dict[int, int] = {}
        self._done: dict[int, int] = {}
        self._stages: dict[int, dict[str, Any]] = {}
        self._guard = threading.Lock()

    def mark_pending(self, kind: str, project_id: int) -> bool:
        with self._guard:
            if (kind, project_id) in self._pending:
                return False
            self._pending.add((kind, project_id))
            return True

    def clear_pending(self, kind: str, project_id: int) -> None:
        with self._guard:
            self._pending.discard((kind, project_id))

    def is_pending(self, kind: str, project_id: int) -> bool:
        with self._guard:
            return (kind, project_id) in self._pending

    def is_locked(self, project_id: int) -> bool:
        with self._guard:
            lock = self._locks.get(project_id)
        return lock is not None and lock.locked()

    @contextmanager
    def project_lock(self, project_id: int) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(project_id, threading.Lock())
        with lock:
            yield

    def note_event(self, project_id: int) -> int:
        with self._guard:
            self._events[project_id] = self._events.get(project_id, 0) + 1
            return self._events[project_id]

    def events(self, project_id: int) -> int:
        with self._guard:
            return self._events.get(project_id, 0)

    def round_done(self, project_id: int, events: int) -> None:
        with self._guard:
            self._done[project_id] = max(self._done.get(project_id, 0), events)

    def behind(self, project_id: int) -> bool:
        with self._guard:
            return self._events.get(project_id, 0) > self._done.get(project_id, 0)

    def projects(self) -> list[int]:
        with self._guard:
            return sorted(self._events)

    def set_stage(self, project_id: int, stage: dict[str, Any] | None) -> None:
        with self._guard:
            if stage is None:
                self._stages.pop(project_id, None)
            else:
                self._stages[project_id] = stage

    def stage(self, project_id: int) -> dict[str, Any] | None:
        with self._guard:
            return self._stages.get(project_id)

    def state_was_lost(self) -> bool:
        return False  # in-process state ends only with the process
