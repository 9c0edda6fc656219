"""A fake ML backend that answers Label Studio's calls with fixed replies and records every request.

Only the standard library is used. Replies:

- ``GET /health`` -> ``{"status": "UP"}``
- ``POST /setup`` -> ``{"model_version": "recorder"}``
- ``POST /predict`` -> one empty result per task
- ``POST /webhook`` -> ``{}``
- ``GET /versions`` -> ``{"versions": []}``
- any other GET or POST -> 404 (still recorded); Label Studio sends no other method
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

MODEL_VERSION = "recorder"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """The value of a header, whatever the case of its name; None when absent."""
        return next((value for key, value in self.headers.items() if key.lower() == name.lower()), None)


def _reply(method: str, path: str, body: bytes) -> tuple[int, Any]:
    route = path.split("?", 1)[0]
    if (method, route) == ("GET", "/health"):
        return 200, {"status": "UP"}
    if (method, route) == ("POST", "/setup"):
        return 200, {"model_version": MODEL_VERSION}
    if (method, route) == ("POST", "/predict"):
        tasks = json.loads(body).get("tasks", [])
        return 200, {"results": [{"result": [], "score": 0.5, "model_version": MODEL_VERSION} for _ in tasks]}
    if (method, route) == ("POST", "/webhook"):
        return 200, {}
    if (method, route) == ("GET", "/versions"):
        return 200, {"versions": []}
    return 404, {"detail": f"{method} {route} is not served by the recorder"}


class _Handler(BaseHTTPRequestHandler):
    server: _RecordingHTTPServer

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.record(RecordedRequest(self.command, self.path, dict(self.headers.items()), body))
        status, answer = _reply(self.command, self.path, body)
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("recorder: " + format, *args)


class _RecordingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)  # port 0: the kernel picks a free one, no race
        self._lock = threading.Lock()
        self.recorded: list[RecordedRequest] = []

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.recorded.append(request)

    def snapshot(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self.recorded)


class RecordingBackend:
    """The fake backend in a background thread; use as a context manager.

    ``url`` is ``http://127.0.0.1:<port>``; ``requests()`` lists what arrived so far, in order.
    """

    def __init__(self) -> None:
        self._server = _RecordingHTTPServer()
        self._thread = threading.Thread(target=self._server.serve_forever, name="recording-backend", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def requests(self) -> list[RecordedRequest]:
        return self._server.snapshot()

    def wait_for(
        self, match: Callable[[RecordedRequest], bool], *, since: int = 0, timeout: float = 10.0, what: str = ""
    ) -> RecordedRequest:
        """The first request at index >= ``since`` that ``match`` accepts; AssertionError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.requests()
            found = next((r for r in seen[since:] if match(r)), None)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                arrived = [(r.method, r.path) for r in seen[since:]]
                raise AssertionError(f"no {what or 'matching request'} within {timeout} s; arrived since: {arrived}")
            time.sleep(0.05)

    def start(self) -> RecordingBackend:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RecordingBackend:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
