"""A reverse proxy in front of Label Studio that a test can slow down or take down."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import requests

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "host"}


class LabelStudioProxy:
    """Forwards to ``target``; ``down`` answers 503 to everything, ``delays`` slows matching calls.

    ``delays`` maps (method, path prefix) to seconds. ``requests_while_down`` counts the
    calls refused while down (the client's retries); :meth:`received` counts the calls that
    arrived, so that a test can wait until a client is inside a given call.
    """

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.down = False
        self.delays: dict[tuple[str, str], float] = {}
        self.requests_while_down = 0
        self._arrived: list[tuple[str, str]] = []  # (method, path); appended from the handler threads
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy._forward(self)

            do_POST = do_PATCH = do_DELETE = do_PUT = do_GET  # noqa: N815 (http.server names)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else None
        self._arrived.append((handler.command, handler.path))
        if self.down:
            self.requests_while_down += 1
            self._answer(handler, 503, {"Content-Type": "application/json"}, b'{"detail": "down for the test"}')
            return
        for (method, prefix), seconds in list(self.delays.items()):
            if handler.command == method and handler.path.startswith(prefix):
                time.sleep(seconds)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_HEADERS}
        answer = requests.request(
            handler.command, self.target + handler.path, headers=headers, data=body, allow_redirects=False, timeout=120
        )
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
        self._answer(handler, answer.status_code, kept, answer.content)

    def received(self, method: str, path_prefix: str) -> int:
        """How many ``method`` calls to a path starting with ``path_prefix`` have arrived so far."""
        return sum(1 for m, path in list(self._arrived) if m == method and path.startswith(path_prefix))

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LabelStudioProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
