"""BodySizeLimit answers 413 for declared and for streamed bodies over the limit."""

from __future__ import annotations

from collections.abc import Iterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from backend.http.body_limit import BodySizeLimit


async def echo_length(request: Request) -> JSONResponse:
    return JSONResponse({"length": len(await request.body())})


def client(max_bytes: int) -> TestClient:
    app = Starlette(routes=[Route("/", echo_length, methods=["POST"])])
    return TestClient(BodySizeLimit(app, max_bytes=max_bytes))


def test_a_body_within_the_limit_passes() -> None:
    answer = client(100).post("/", content=b"x" * 100)
    assert answer.status_code == 200 and answer.json() == {"length": 100}


def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    answer = client(100).post("/", content=b"x" * 101)
    assert answer.status_code == 413
    assert answer.json() == {"error": "the request body is over the 100 byte limit"}


def test_a_chunked_body_growing_over_the_limit_is_refused() -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(5):
            yield b"y" * 40

    answer = client(100).post("/", content=chunks())
    assert answer.status_code == 413


def test_a_malformed_content_length_is_refused() -> None:
    answer = client(100).post("/", content=b"{}", headers={"content-length": "abc"})
    assert answer.status_code == 413
