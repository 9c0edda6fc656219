"""The HTTP service Label Studio calls: /health, /setup, /predict, /webhook, /versions, /metrics.

Routes are thin: they validate, then read state or hand work to the dispatcher, and
answer in milliseconds. Errors become JSON {"error": ...} in one handler.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, ValidationError
from redis import Redis
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.auth import check_basic_auth
from backend.body_limit import BodySizeLimit
from backend.coordination import redis_connection
from backend.dispatch import Dispatcher, QueueUnavailableError, build_dispatcher
from backend.errors import BackendError, BadRequestError, LabelConfigError
from backend.label_config import parse_label_config
from backend.learning_curve import CurvePoint, audit_estimate, learning_curve, plot_png, stop_signal
from backend.ledger import LabelLedger
from backend.metrics import Metrics
from backend.predictor import UNTRAINED_VERSION, Predictor
from backend.reconciler import Reconciler
from backend.redis_store import open_project_ledger, open_project_store, project_ids
from backend.schemas import (
    HealthResponse,
    PredictRequest,
    PredictResponse,
    SetupRequest,
    SetupResponse,
    StatusResponse,
    VersionsRequest,
    VersionsResponse,
    WebhookRequest,
    WebhookResponse,
    project_id_of,
)
from backend.settings import Settings
from backend.status_page import render_status_page
from backend.store import ProjectStore

logger = logging.getLogger(__name__)

ROUND_ACTIONS = {
    "ANNOTATION_CREATED",
    "ANNOTATIONS_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_DELETED",
    "START_TRAINING",
}
EMBED_ACTIONS = {"TASKS_CREATED"}
LEDGER_ONLY_ACTIONS = {"TASKS_DELETED"}  # changes the ledger; the next round sees it
IGNORED_ACTIONS = {
    "PROJECT_CREATED",
    "PROJECT_UPDATED",
    "PROJECT_DELETED",
    "LABEL_LINK_CREATED",
    "LABEL_LINK_UPDATED",
    "LABEL_LINK_DELETED",
}
CONTACT_EVERY = 60.0  # seconds between the background checks /setup starts for one project


def create_app(settings: Settings, dispatcher: Dispatcher | None = None, predictor: Predictor | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.reconciler.start()
        yield
        app.state.reconciler.stop()
        app.state.dispatcher.close()

    app = FastAPI(title="ALFA-Mix ML backend for Label Studio", version="0.1.0", lifespan=lifespan)
    connection = redis_connection(settings.redis_url) if settings.redis_url else None

    def store(project_id: int) -> ProjectStore:
        return open_project_store(settings.model_dir, project_id, connection)

    def ledger(project_id: int) -> LabelLedger:
        return open_project_ledger(settings.model_dir, project_id, connection)

    app.add_middleware(BodySizeLimit)
    app.state.settings = settings
    app.state.dispatcher = dispatcher or build_dispatcher(settings, connection)
    app.state.predictor = predictor or Predictor(settings, _context_or_none(settings, connection), connection)
    app.state.reconciler = Reconciler(app.state.dispatcher, settings.reconcile_seconds)
    app.state.metrics = Metrics()
    app.state.contacted_at = {}

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path != "/health":
            try:
                check_basic_auth(request, settings)
            except BackendError as error:
                return _error_response(error, {"WWW-Authenticate": 'Basic realm="alfamix"'})
        return await call_next(request)

    @app.exception_handler(BackendError)
    async def backend_error(request: Request, error: BackendError) -> JSONResponse:
        if error.status_code >= 500:
            logger.error("%s %s: %s", request.method, request.url.path, error)
        return _error_response(error)

    @app.exception_handler(RedisError)
    async def redis_error(request: Request, error: RedisError) -> JSONResponse:
        logger.warning("%s %s: Redis unreachable: %s", request.method, request.url.path, type(error).__name__)
        return JSONResponse(
            {"error": f"the backend's state (Redis) is unreachable: {type(error).__name__}"}, status_code=503
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        # Framework errors (unknown route, wrong method, unparsable body) in the same {"error"} shape.
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": f"invalid request: {_first_problem(error.errors())}"}, status_code=422)

    @app.get("/health", response_model=HealthResponse)
    def health() -> HealthResponse:
        """Liveness; answers without touching Label Studio, models or Redis."""
        return HealthResponse(
            status="UP",
            model_class="ALFAMix",
            jobs="rq" if settings.redis_url else "embedded",
            label_studio="configured" if settings.label_studio_configured else "missing",
        )

    @app.post("/setup", response_model=SetupResponse)
    def setup(body: SetupRequest) -> SetupResponse:
        """Validate the project's label config and report the live model version."""
        project_id = project_id_of(body.project)
        try:
            parse_label_config(body.label_schema)
        except LabelConfigError as error:
            # Label Studio shows the owner only "400 Client Error", so the reason goes to the log too.
            logger.warning("project %s: label config refused: %s", project_id, error)
            raise
        app.state.reconciler.seen(project_id)
        if settings.label_studio_configured:
            _on_contact(app, project_id)
        return SetupResponse(model_version=app.state.predictor.live_version(project_id) or UNTRAINED_VERSION)

    @app.post("/predict", response_model=PredictResponse)
    def predict(body: PredictRequest) -> PredictResponse:
        """One prediction per task, in the order given, from the live head and cached embeddings."""
        project_id = project_id_of(body.project)
        spec = parse_label_config(body.label_config)
        for task in body.tasks:
            if not isinstance(task.get("id"), int) or isinstance(task.get("id"), bool):
                raise BadRequestError("every task needs an integer id")
        results = app.state.predictor.predict(project_id, spec, body.tasks)
        app.state.metrics.count("alfamix_predicted_tasks_total", len(results))
        return PredictResponse(results=results)

    @app.post("/webhook", response_model=WebhookResponse, openapi_extra=_json_body_schema(WebhookRequest, True))
    async def webhook(request: Request) -> WebhookResponse:
        """Queue a round (annotation events, START_TRAINING) or an embedding job (TASKS_CREATED)."""
        started = time.perf_counter()
        try:
            body = WebhookRequest.model_validate(await _json_body(request))
        except ValidationError as error:
            raise BadRequestError(f"invalid webhook: {_first_problem(error.errors())}") from None
        if body.action in IGNORED_ACTIONS or _is_skip(body):
            answer = WebhookResponse(action=body.action, project=None, status="ignored")
        elif body.action in ROUND_ACTIONS | EMBED_ACTIONS | LEDGER_ONLY_ACTIONS:
            project_id = project_id_of(body.project)
            app.state.reconciler.seen(project_id)
            try:
                ledger(project_id).apply_event(body.action, body.model_dump())
                if body.action in LEDGER_ONLY_ACTIONS:
                    status = "noted"
                else:
                    kind = "round" if body.action in ROUND_ACTIONS else "embed"
                    queued = app.state.dispatcher.request(kind, project_id)
                    status = "queued" if queued else "already queued"
            except (QueueUnavailableError, RedisError) as error:
                # Annotations live in Label Studio: the catch-up asks for the round once Redis is back.
                reason = error if isinstance(error, QueueUnavailableError) else f"Redis: {type(error).__name__}"
                logger.warning("project %s: %s deferred: %s", project_id, body.action, reason)
                app.state.reconciler.defer(project_id)
                status = "deferred"
            answer = WebhookResponse(action=body.action, project=project_id, status=status)
        else:
            raise BadRequestError(f"unknown webhook action {body.action[:60]!r}")
        app.state.metrics.webhook(body.action, answer.status, time.perf_counter() - started)
        return answer

    versions_body = _json_body_schema(VersionsRequest, False)

    @app.get("/versions", response_model=VersionsResponse, openapi_extra=versions_body)
    @app.post("/versions", response_model=VersionsResponse, openapi_extra=versions_body)
    async def versions(request: Request) -> VersionsResponse:
        """Model versions kept, newest first: of one project when the body or query names one, else of all.

        Label Studio 1.23 sends this GET with no body, so it cannot say which project asks.
        """
        body = await _json_body(request, allow_empty=True)
        project = body.get("project") or request.query_params.get("project")
        ids = [project_id_of(project)] if project else project_ids(settings.model_dir, connection)
        found = {v for pid in ids for v in store(pid).versions()}
        return VersionsResponse(versions=sorted(found, key=_version_sort_key, reverse=True))

    def project_status(project_id: int) -> tuple[dict[str, Any], list[CurvePoint]]:
        state = store(project_id_of(project_id))
        live = state.live() or {}
        rounds = state.rounds()
        points = learning_curve(rounds)
        last: dict[str, Any] = next((r for r in reversed(rounds) if r.get("status") == "done"), {})
        counts = {
            "tasks": last.get("n_tasks", 0),
            "labeled": last.get("n_labeled_tasks", 0),
            "ranked": last.get("n_unlabeled_tasks", 0),
            "skipped": len(last.get("skipped_tasks") or {}),
        }
        coordinator = app.state.dispatcher.coordinator
        status = {
            "project": project_id,
            "live_model_version": live.get("model_version"),
            "live_since": live.get("since"),
            "jobs": app.state.dispatcher.status(project_id),
            "stage": coordinator.stage(project_id),
            "behind": coordinator.behind(project_id),
            "counts": counts,
            "learning_curve": [asdict(p) for p in points],
            "stop_signal": stop_signal(points),
            "pool_accuracy": asdict(audit) if (audit := audit_estimate(rounds)) else None,
            "strategy": last.get("strategy", settings.strategy),
            "rounds": rounds,
        }
        return status, points

    @app.get("/projects/{project_id}/status", response_model=StatusResponse)
    def status(project_id: int) -> StatusResponse:
        """Jobs pending or running, the running stage, the live model version, counts, learning curve, history."""
        return StatusResponse(**project_status(project_id)[0])

    @app.get("/projects/{project_id}", response_class=HTMLResponse)
    def status_page(project_id: int) -> str:
        """The same, as a page for people; it refreshes itself."""
        status, points = project_status(project_id)
        return render_status_page(project_id, status, points)

    @app.get("/projects/{project_id}/learning-curve.png", response_class=Response)
    def learning_curve_png(project_id: int) -> Response:
        """Pre-label accuracy against the labels each model version was trained on, with a 95% band."""
        status, points = project_status(project_id)
        title = f"project {project_id}, live: {status['live_model_version'] or 'none yet'}"
        return Response(plot_png(points, title), media_type="image/png")

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        """Prometheus text format; counts only, no secrets."""
        return app.state.metrics.render(settings.model_dir, connection, app.state.dispatcher.status)

    return app


async def _json_body(request: Request, allow_empty: bool = False) -> Any:
    raw = await request.body()
    if not raw.strip():
        if allow_empty:
            return {}
        raise BadRequestError("the request body is empty; JSON expected")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequestError("the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequestError("the request body must be a JSON object")
    return value


def _json_body_schema(model: type[BaseModel], required: bool) -> dict[str, Any]:
    """OpenAPI for a route that parses its JSON body itself (to answer malformed JSON in our own words)."""
    return {
        "requestBody": {"required": required, "content": {"application/json": {"schema": model.model_json_schema()}}}
    }


def _first_problem(errors: Sequence[Any]) -> str:
    first = errors[0] if errors else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    return f"{where}: {first.get('msg', 'malformed')}"


def _is_skip(body: WebhookRequest) -> bool:
    """A skipped task adds a cancelled annotation, which changes no label."""
    annotation = getattr(body, "annotation", None)
    return (
        body.action == "ANNOTATION_CREATED" and isinstance(annotation, dict) and bool(annotation.get("was_cancelled"))
    )


def _on_contact(app: FastAPI, project_id: int) -> None:
    """Background work /setup starts: embed the project's existing tasks, put our auth on its webhook.

    /setup runs before every prediction batch, so this fires at most once a minute per project.
    """
    now = time.monotonic()
    if now - app.state.contacted_at.get(project_id, -CONTACT_EVERY) < CONTACT_EVERY:
        return
    try:
        if app.state.settings.basic_auth_enabled:
            app.state.dispatcher.request("secure_webhooks", project_id)
        app.state.dispatcher.request("embed", project_id)
    except QueueUnavailableError as error:  # /setup must answer anyway; the next /setup tries again
        logger.warning("project %s: background checks not started: %s", project_id, error)
        return
    app.state.contacted_at[project_id] = now


def _version_sort_key(model_version: str) -> tuple[str, int]:
    """alfamix-<round>-<UTC time>: by time, then round."""
    parts = model_version.split("-")
    round_number = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else -1
    return parts[-1], round_number


def _error_response(error: BackendError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=error.status_code, headers=headers)


def _context_or_none(settings: Settings, connection: Redis | None) -> Any:
    from backend.context import build_context

    try:
        return build_context(settings, connection)
    except BackendError as error:
        logger.warning("%s", error)
        return None
