"""The HTTP service Label Studio calls: routes translate requests into ALFAMixBackend calls.

Routes answer in milliseconds: they validate, then read state or ask for a job. Errors
become JSON {"error": ...} in one place (backend/http/handlers.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from backend.http.body_limit import BodySizeLimit
from backend.http.handlers import add_error_handlers, basic_auth
from backend.http.metrics import ServiceMetrics
from backend.http.routes import health, model, status
from backend.ml_backend import ALFAMixBackend


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.backend.start()  # the catch-up thread
    yield
    app.state.backend.stop()


def create_app(backend: ALFAMixBackend) -> FastAPI:
    app = FastAPI(title="ALFA-Mix ML backend for Label Studio", version="0.1.0", lifespan=lifespan)
    app.state.backend = backend
    app.state.metrics = ServiceMetrics(backend)
    app.add_middleware(BodySizeLimit)
    app.middleware("http")(basic_auth)
    add_error_handlers(app)
    for router in (health.router, model.router, status.router):
        app.include_router(router)
    return app
