"""Every error becomes JSON {"error": ...} with one status code, here and nowhere else."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.errors import BackendError
from backend.http.auth import check_basic_auth
from backend.settings import Settings

logger = logging.getLogger(__name__)


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BackendError, backend_error)  # type: ignore[arg-type]
    app.add_exception_handler(RedisError, redis_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]


async def basic_auth(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Middleware: every route but /health needs BASIC_AUTH_USER/PASS when they are set."""
    if request.url.path != "/health":
        settings: Settings = request.app.state.backend.settings
        try:
            check_basic_auth(request, settings)
        except BackendError as error:
            return error_response(error, {"WWW-Authenticate": 'Basic realm="alfamix"'})
    return await call_next(request)


async def backend_error(request: Request, error: BackendError) -> JSONResponse:
    if error.status_code >= 500:
        logger.error("%s %s: %s", request.method, request.url.path, error)
    return error_response(error)


async def redis_error(request: Request, error: RedisError) -> JSONResponse:
    logger.warning("%s %s: Redis unreachable: %s", request.method, request.url.path, type(error).__name__)
    return JSONResponse(
        {"error": f"the backend's state (Redis) is unreachable: {type(error).__name__}"}, status_code=503
    )


async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    # Framework errors (unknown route, wrong method, unparsable body) in the same {"error"} shape.
    return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)


async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse({"error": f"invalid request: {first_problem(error.errors())}"}, status_code=422)


def error_response(error: BackendError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=error.status_code, headers=headers)


def first_problem(errors: Sequence[Any]) -> str:
    first = errors[0] if errors else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    return f"{where}: {first.get('msg', 'malformed')}"
