"""The de-duplication rule for jobs, in one place: per project and job kind, at most one job
pending, and per project one job running at a time (they share the project's lock).

A job clears its pending mark only once it holds the lock, so every event that arrives
before the job reads Label Studio is covered by it, and every later event makes one
new pending job. Redis holds the marks and locks when workers are separate processes;
the embedded default keeps them in memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from redis import Redis
from redis.exceptions import LockNotOwnedError

logger = logging.getLogger(__name__)

KEY_PREFIX = "alfamix"


class Coordinator(Protocol):
    def mark_pending(self, kind: str, project_id: int) -> bool:
        """True if no job of this kind was pending for the project (the caller must enqueue one)."""

    def clear_pending(self, kind: str, project_id: int) -> None: ...

    def is_pending(self, kind: str, project_id: int) -> bool: ...

    def project_lock(self, project_id: int) -> AbstractContextManager[None]: ...

    def is_locked(self, project_id: int) -> bool:
        """True while a job of the project runs."""


class RedisCoordinator:
    def __init__(self, connection: Redis, lock_timeout: int) -> None:
        self.connection = connection
        self.lock_timeout = lock_timeout

    def mark_pending(self, kind: str, project_id: int) -> bool:
        # The expiry bounds how long a lost job (its worker killed) can block new ones.
        return bool(self.connection.set(self._pending_key(kind, project_id), 1, nx=True, ex=self.lock_timeout))

    def clear_pending(self, kind: str, project_id: int) -> None:
        self.connection.delete(self._pending_key(kind, project_id))

    def is_pending(self, kind: str, project_id: int) -> bool:
        return bool(self.connection.exists(self._pending_key(kind, project_id)))

    def is_locked(self, project_id: int) -> bool:
        return bool(self.connection.exists(self._lock_key(project_id)))

    @contextmanager
    def project_lock(self, project_id: int) -> Iterator[None]:
        lock = self.connection.lock(
            self._lock_key(project_id), timeout=self.lock_timeout, blocking_timeout=self.lock_timeout
        )
        if not lock.acquire():
            raise TimeoutError(f"project {project_id}: lock still held after {self.lock_timeout} s")
        try:
            yield
        finally:
            try:
                lock.release()
            except LockNotOwnedError:  # the job outlived ALFAMIX_ROUND_TIMEOUT and the lock expired
                logger.warning("project %s: the lock had expired before the job ended", project_id)

    @staticmethod
    def _lock_key(project_id: int) -> str:
        return f"{KEY_PREFIX}:lock:{project_id}"

    @staticmethod
    def _pending_key(kind: str, project_id: int) -> str:
        return f"{KEY_PREFIX}:pending:{kind}:{project_id}"


class LocalCoordinator:
    """The same rule inside one process (the embedded default, no Redis)."""

    def __init__(self) -> None:
        self._pending: set[tuple[str, int]] = set()
        self._locks: dict[int, threading.Lock] = {}
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
