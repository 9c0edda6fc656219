"""ALFAMixBackend: Label Studio's ML-backend convention (setup, predict, fit) for this backend.

The HTTP layer translates each request into one of these calls. Training never runs here:
``fit`` requests a round, which a worker (or the embedded job thread) runs.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.exceptions import RedisError

from backend.errors import LabelConfigError
from backend.jobs.dispatch import Dispatcher, QueueUnavailableError, build_dispatcher
from backend.jobs.reconciler import Reconciler
from backend.jobs.registry import JobKind
from backend.jobs.workers import live_workers
from backend.labelstudio.label_config import ClassificationSpec, parse_label_config
from backend.labelstudio.predictions import UNTRAINED_VERSION, empty_prediction
from backend.labelstudio.projects import project_id_of
from backend.settings import Settings
from backend.state.ledger import LabelLedger
from backend.state.redis_state import redis_connection
from backend.state.store import ProjectStore, open_project_ledger, open_project_store, project_ids

if TYPE_CHECKING:
    from backend.pipeline.predictor import Predictor

logger = logging.getLogger(__name__)

ROUND_EVENTS = {
    "ANNOTATION_CREATED",
    "ANNOTATIONS_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_DELETED",
    "START_TRAINING",
}
EMBED_EVENTS = {"TASKS_CREATED"}
LEDGER_ONLY_EVENTS = {"TASKS_DELETED"}  # changes the ledger; the next round sees it
IGNORED_EVENTS = {
    "PROJECT_CREATED",
    "PROJECT_UPDATED",
    "PROJECT_DELETED",
    "LABEL_LINK_CREATED",
    "LABEL_LINK_UPDATED",
    "LABEL_LINK_DELETED",
}
CONTACT_EVERY = 60.0  # seconds between the background checks /setup starts for one project


class UnknownEventError(ValueError):
    """A webhook action this backend does not know."""


@dataclass(frozen=True)
class PredictContext:
    """Which project asks, with its label config parsed."""

    project_id: int
    spec: ClassificationSpec


class ALFAMixBackend:
    """One per process; every method takes the project it is about."""

    def __init__(self, settings: Settings, dispatcher: Dispatcher, connection: Redis | None = None) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self.connection = connection  # where project state lives, when jobs run on RQ workers
        self.reconciler = Reconciler(dispatcher, settings.reconcile_seconds)
        self._predictor: Predictor | None = None
        self._predictor_lock = threading.Lock()
        self._contacted_at: dict[int, float] = {}
        self._live: dict[int, str | None] = {}  # last live version read, served while Redis is unreachable

    @classmethod
    def from_settings(cls, settings: Settings) -> ALFAMixBackend:
        connection = redis_connection(settings.redis_url) if settings.redis_url else None
        return cls(settings, build_dispatcher(settings, connection), connection)

    def start(self) -> None:
        self.reconciler.start()

    def stop(self) -> None:
        self.reconciler.stop()
        self.dispatcher.close()

    def setup(self, project_id: int, label_config: str) -> str:
        """Check the label config, start the project's background checks; returns the live model version."""
        try:
            parse_label_config(label_config)
        except LabelConfigError as error:
            # Label Studio shows the owner only "400 Client Error", so the reason goes to the log too.
            logger.warning("project %s: label config refused: %s", project_id, error)
            raise
        self.reconciler.seen(project_id)
        if self.settings.label_studio_configured:
            self._on_contact(project_id)
        return self.live_version(project_id) or UNTRAINED_VERSION

    def predict(self, tasks: list[dict[str, Any]], context: PredictContext) -> list[dict[str, Any]]:
        """One prediction per task, in the order given; tasks not embedded yet get an empty one and an embed job."""
        model_version = self.live_version(context.project_id)
        if model_version is None:
            return [empty_prediction(UNTRAINED_VERSION) for _ in tasks]
        predictions = self.predictor.predict(context.project_id, model_version, context.spec, tasks)
        if predictions.missing and self.settings.label_studio_configured:
            try:
                self.dispatcher.request(JobKind.EMBED, context.project_id)
            except QueueUnavailableError as error:  # the predictions stand; the next /setup asks again
                logger.warning("project %s: embed job not requested: %s", context.project_id, error)
        return predictions.results

    def fit(self, event: str, data: dict[str, Any]) -> str:
        """Note a webhook event in the ledger and request the job it calls for; returns what happened:
        "queued", "already queued", "noted" (ledger only), "deferred" (queue unreachable) or "ignored"."""
        if event in IGNORED_EVENTS or _is_skip(event, data):
            return "ignored"
        if event not in ROUND_EVENTS | EMBED_EVENTS | LEDGER_ONLY_EVENTS:
            raise UnknownEventError(f"unknown webhook action {event[:60]!r}")
        project_id = project_id_of(data.get("project"))
        self.reconciler.seen(project_id)
        try:
            self.ledger(project_id).apply_event(event, data)
            if event in LEDGER_ONLY_EVENTS:
                return "noted"
            kind = JobKind.ROUND if event in ROUND_EVENTS else JobKind.EMBED
            return "queued" if self.dispatcher.request(kind, project_id) else "already queued"
        except (QueueUnavailableError, RedisError) as error:
            # Annotations live in Label Studio: the catch-up asks for the round once Redis is back.
            reason = error if isinstance(error, QueueUnavailableError) else f"Redis: {type(error).__name__}"
            logger.warning("project %s: %s deferred: %s", project_id, event, reason)
            self.reconciler.defer(project_id)
            return "deferred"

    def versions(self, project_id: int | None) -> list[str]:
        """Model versions kept, of one project or of all; unordered."""
        ids = [project_id] if project_id else self.project_ids()
        return sorted({v for pid in ids for v in self.store(pid).versions()})

    def project_ids(self) -> list[int]:
        """Projects with state, wherever it is kept."""
        return project_ids(self.settings.model_dir, self.connection)

    def live_version(self, project_id: int) -> str | None:
        """The project's live version; the last one read when the state (Redis) is unreachable."""
        try:
            version = (self.store(project_id).live() or {}).get("model_version")
        except RedisError as error:
            logger.warning(
                "project %s: state unreachable (%s); serving the last known version", project_id, type(error).__name__
            )
            return self._live.get(project_id)
        self._live[project_id] = version
        return version

    def workers(self) -> list[dict[str, str]] | None:
        """The RQ workers alive and their devices; None in the embedded mode or while Redis is down."""
        if self.connection is None:
            return None
        try:
            return live_workers(self.connection)
        except RedisError as error:
            logger.warning("workers unknown: Redis unreachable (%s)", type(error).__name__)
            return None

    def store(self, project_id: int) -> ProjectStore:
        return open_project_store(self.settings.model_dir, project_id, self.connection)

    def ledger(self, project_id: int) -> LabelLedger:
        return open_project_ledger(self.settings.model_dir, project_id, self.connection)

    @property
    def predictor(self) -> Predictor:
        """Built on first use: it brings torch, which a web process that only enqueues never needs."""
        with self._predictor_lock:
            if self._predictor is None:
                from backend.pipeline.predictor import Predictor

                self._predictor = Predictor(self.settings, self.connection)
            return self._predictor

    def _on_contact(self, project_id: int) -> None:
        """Background work /setup starts: embed the project's existing tasks, put our auth on its webhook.

        /setup runs before every prediction batch, so this fires at most once a minute per project.
        """
        now = time.monotonic()
        if now - self._contacted_at.get(project_id, -CONTACT_EVERY) < CONTACT_EVERY:
            return
        try:
            if self.settings.basic_auth_enabled:
                self.dispatcher.request(JobKind.SECURE_WEBHOOKS, project_id)
            self.dispatcher.request(JobKind.EMBED, project_id)
        except QueueUnavailableError as error:  # /setup must answer anyway; the next /setup tries again
            logger.warning("project %s: background checks not started: %s", project_id, error)
            return
        self._contacted_at[project_id] = now


def _is_skip(event: str, data: dict[str, Any]) -> bool:
    """A skipped task adds a cancelled annotation, which changes no label."""
    annotation = data.get("annotation")
    return event == "ANNOTATION_CREATED" and isinstance(annotation, dict) and bool(annotation.get("was_cancelled"))
