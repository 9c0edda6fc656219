"""The ML-backend protocol Label Studio speaks: /setup, /predict, /webhook, /versions.

Each route validates the wire format and makes one call on ALFAMixBackend.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError

from backend.errors import BadRequestError
from backend.http.deps import BackendDep, MetricsDep
from backend.http.handlers import first_problem
from backend.http.schemas import (
    PredictRequest,
    PredictResponse,
    SetupRequest,
    SetupResponse,
    VersionsRequest,
    VersionsResponse,
    WebhookRequest,
    WebhookResponse,
)
from backend.labelstudio.label_config import parse_label_config
from backend.labelstudio.projects import project_id_of
from backend.ml_backend import PredictContext, UnknownEventError

router = APIRouter()


@router.post("/setup", response_model=SetupResponse)
def setup(body: SetupRequest, backend: BackendDep) -> SetupResponse:
    """Validate the project's label config and report the live model version."""
    return SetupResponse(model_version=backend.setup(project_id_of(body.project), body.label_schema))


@router.post("/predict", response_model=PredictResponse)
def predict(body: PredictRequest, backend: BackendDep, metrics: MetricsDep) -> PredictResponse:
    """One prediction per task, in the order given, from the live head and cached embeddings."""
    context = PredictContext(project_id_of(body.project), parse_label_config(body.label_config))
    for task in body.tasks:
        if not isinstance(task.get("id"), int) or isinstance(task.get("id"), bool):
            raise BadRequestError("every task needs an integer id")
    results = backend.predict(body.tasks, context)
    metrics.predicted_tasks.inc(len(results))
    return PredictResponse.model_validate({"results": results})


def json_body_schema(model: type[BaseModel], required: bool) -> dict[str, Any]:
    """OpenAPI for a route that parses its JSON body itself (to answer malformed JSON in our own words)."""
    return {
        "requestBody": {"required": required, "content": {"application/json": {"schema": model.model_json_schema()}}}
    }


@router.post("/webhook", response_model=WebhookResponse, openapi_extra=json_body_schema(WebhookRequest, True))
async def webhook(request: Request, backend: BackendDep, metrics: MetricsDep) -> WebhookResponse:
    """Queue a round (annotation events, START_TRAINING) or an embedding job (TASKS_CREATED)."""
    started = time.perf_counter()
    try:
        body = WebhookRequest.model_validate(await json_body(request))
    except ValidationError as error:
        raise BadRequestError(f"invalid webhook: {first_problem(error.errors())}") from None
    try:
        status = backend.fit(body.action, body.model_dump())
    except UnknownEventError as error:
        raise BadRequestError(str(error)) from None
    project = project_id_of(body.project) if status != "ignored" else None
    metrics.webhook_events.labels(body.action, status).inc()
    metrics.webhook_seconds.observe(time.perf_counter() - started)
    return WebhookResponse(action=body.action, project=project, status=status)


@router.get("/versions", response_model=VersionsResponse, openapi_extra=json_body_schema(VersionsRequest, False))
@router.post("/versions", response_model=VersionsResponse, openapi_extra=json_body_schema(VersionsRequest, False))
async def versions(request: Request, backend: BackendDep) -> VersionsResponse:
    """Model versions kept, newest first: of one project when the body or query names one, else of all.

    Label Studio 1.23 sends this GET with no body, so it cannot say which project asks.
    """
    body = await json_body(request, allow_empty=True)
    project = body.get("project") or request.query_params.get("project")
    found = backend.versions(project_id_of(project) if project else None)
    return VersionsResponse(versions=sorted(found, key=version_sort_key, reverse=True))


async def json_body(request: Request, allow_empty: bool = False) -> dict[str, Any]:
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


def version_sort_key(model_version: str) -> tuple[str, int]:
    """alfamix-<round>-<UTC time>: by time, then round."""
    parts = model_version.split("-")
    round_number = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else -1
    return parts[-1], round_number
