"""Catch-up in the web process: ask again for rounds that events promised but no round delivered.

A round can be lost: its worker killed mid-round, Label Studio down until the retries ran
out, Redis unreachable when the webhook came, or Redis restarted without its data.
Annotations live in Label Studio, so nothing is lost with them; every ``interval`` seconds
this thread requests a round for each project whose counted requests outrun its finished
rounds and that has none pending or running, and after a state loss, for every project
this process has heard of.
"""

from __future__ import annotations

import logging
import threading

from redis.exceptions import RedisError

from backend.errors import BackendError
from backend.jobs.dispatch import Dispatcher
from backend.jobs.registry import JobKind

logger = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, dispatcher: Dispatcher, interval: float) -> None:
        self.dispatcher = dispatcher
        self.interval = interval
        self._deferred: set[int] = set()  # projects whose event found the queue unreachable
        self._seen: set[int] = set()  # projects this process heard of, to re-derive after a state loss
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="alfamix-reconciler", daemon=True)

    def defer(self, project_id: int) -> None:
        with self._lock:
            self._deferred.add(project_id)

    def seen(self, project_id: int) -> None:
        with self._lock:
            self._seen.add(project_id)

    def run_once(self) -> list[int]:
        """Request the rounds that are due; returns their projects."""
        coordinator = self.dispatcher.coordinator
        requested = []
        try:
            if coordinator.state_was_lost():
                # Redis came back empty: every project this process knows gets a round from scratch.
                with self._lock:
                    self._deferred |= self._seen
            with self._lock:
                deferred = set(self._deferred)
            for project_id in sorted(deferred | set(coordinator.projects())):
                due = project_id in deferred or (
                    coordinator.behind(project_id)
                    and not coordinator.is_pending(JobKind.ROUND, project_id)
                    and not coordinator.is_locked(project_id)
                )
                if due:
                    self.dispatcher.request(JobKind.ROUND, project_id)
                    requested.append(project_id)
                    with self._lock:
                        self._deferred.discard(project_id)
        except (RedisError, BackendError) as error:
            logger.warning("catch-up check failed, will retry in %.0f s: %s", self.interval, error)
        if requested:
            logger.info("catch-up: rounds requested for projects %s", requested)
        return requested

    def start(self) -> None:
        # An empty Redis at start is a first start or a restart of both, not a loss: set the
        # marker now, so that only Redis emptied while this process runs reads as lost state.
        try:
            self.dispatcher.coordinator.state_was_lost()
        except RedisError as error:
            logger.warning("catch-up: Redis unreachable at start: %s", error)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()
