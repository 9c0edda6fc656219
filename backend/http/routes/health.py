"""/health and /metrics: what a load balancer and a Prometheus scraper read."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from backend.http.deps import BackendDep, MetricsDep
from backend.http.schemas import HealthResponse
from backend.ml_backend import ALFAMixBackend

router = APIRouter()


@router.get("/health", response_model=HealthResponse)
def health(backend: BackendDep) -> HealthResponse:
    """Liveness, and the workers' devices; answers without touching Label Studio or models, and
    without Redis when it is down."""
    return HealthResponse(
        status="UP",
        model_class=ALFAMixBackend.__name__,
        jobs="rq" if backend.settings.redis_url else "embedded",
        label_studio="configured" if backend.settings.label_studio_configured else "missing",
        workers=backend.workers(),
    )


@router.get("/metrics", response_class=Response)
def metrics(metrics: MetricsDep) -> Response:
    """Prometheus text format; counts only, no secrets."""
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
