"""What routes receive, as typed dependencies: the backend object and the app's metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backend.http.metrics import ServiceMetrics
from backend.ml_backend import ALFAMixBackend


def get_backend(request: Request) -> ALFAMixBackend:
    backend: ALFAMixBackend = request.app.state.backend
    return backend


def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


BackendDep = Annotated[ALFAMixBackend, Depends(get_backend)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
