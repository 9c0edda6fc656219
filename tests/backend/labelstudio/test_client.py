"""LabelStudioClient against a small local HTTP server: pagination, retries, and errors that name the call."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from backend.errors import LabelStudioError
from backend.labelstudio.client import TASK_PAGE_SIZE, LabelStudioClient

N_TASKS = 1234


class FakeLabelStudio(BaseHTTPRequestHandler):
    calls: ClassVar[list[tuple[str, str, str | None]]] = []
    queries: ClassVar[list[dict[str, list[str]]]] = []
    failures_left = 0

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        type(self).calls.append((self.command, url.path, self.headers.get("Authorization")))
        type(self).queries.append(query)
        if self.headers.get("Authorization") == "Token rotated-token":
            return self._send(401, {"detail": "Invalid token."})
        if url.path == "/api/projects/7" and type(self).failures_left > 0:
            type(self).failures_left -= 1
            return self._send(503, {"detail": "busy"})
        if url.path == "/api/projects/7":
            return self._send(200, {"id": 7, "label_config": "<View/>"})
        if url.path == "/api/tasks":
            page, size = int(query["page"][0]), int(query["page_size"][0])
            ids = list(range(1, N_TASKS + 1))[(page - 1) * size : page * size]
            if not ids:
                return self._send(404, {"detail": "Invalid page."})
            return self._send(200, {"tasks": [{"id": i, "data": {}} for i in ids], "total": N_TASKS})
        if url.path == "/api/projects/7/import/predictions":
            return self._send(201, {"created": len(body)})
        return self._send(404, {"detail": "Not found"})

    def _send(self, status: int, value: Any) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def client() -> Iterator[LabelStudioClient]:
    FakeLabelStudio.calls = []
    FakeLabelStudio.queries = []
    FakeLabelStudio.failures_left = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLabelStudio)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield LabelStudioClient(f"http://127.0.0.1:{server.server_port}", "legacy-token-abc", timeout=5, max_retries=3)
    server.shutdown()


def test_iter_tasks_reads_every_page(client: LabelStudioClient) -> None:
    ids = [task["id"] for task in client.iter_tasks(7)]
    assert ids == list(range(1, N_TASKS + 1))
    pages = [call for call in FakeLabelStudio.calls if call[1] == "/api/tasks"]
    assert len(pages) == -(-N_TASKS // TASK_PAGE_SIZE)  # 3 pages of 500, the last one short


def test_5xx_answers_are_retried_then_succeed(client: LabelStudioClient) -> None:
    FakeLabelStudio.failures_left = 2
    assert client.get_project(7)["id"] == 7
    assert [c[1] for c in FakeLabelStudio.calls].count("/api/projects/7") == 3


def test_persistent_failure_raises_an_error_naming_the_call_without_the_token(client: LabelStudioClient) -> None:
    FakeLabelStudio.failures_left = 10
    with pytest.raises(LabelStudioError) as error:
        client.get_project(7)
    assert "GET http://127.0.0.1:" in str(error.value) and "/api/projects/7 answered HTTP 503" in str(error.value)
    assert "legacy-token-abc" not in str(error.value)
    assert [c[1] for c in FakeLabelStudio.calls].count("/api/projects/7") == 4  # 1 + max_retries


def test_legacy_tokens_authenticate_as_token(client: LabelStudioClient) -> None:
    client.get_project(7)
    assert FakeLabelStudio.calls[0][2] == "Token legacy-token-abc"
    assert client.auth_headers() == {"Authorization": "Token legacy-token-abc"}


def test_predictions_are_imported_in_chunks_and_counted(client: LabelStudioClient) -> None:
    created = client.import_predictions(7, [{"task": i} for i in range(2500)])
    assert created == 2500
    assert [c[1] for c in FakeLabelStudio.calls].count("/api/projects/7/import/predictions") == 3  # 1000 + 1000 + 500


def test_writes_pause_between_chunks() -> None:
    paused = LabelStudioClient("http://127.0.0.1:9", "token-xyz", write_pause=0.2)
    sent: list[float] = []
    paused._call = lambda *args, **kwargs: sent.append(time.monotonic()) or {"created": 1000}  # type: ignore[method-assign]
    assert paused.import_predictions(7, [{"task": i} for i in range(3000)]) == 3000
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert len(gaps) == 2 and min(gaps) >= 0.2


def test_labeled_tasks_are_listed_with_the_total_annotations_filter(client: LabelStudioClient) -> None:
    list(client.iter_labeled_tasks(7))
    query = FakeLabelStudio.queries[-1]
    assert query["fields"] == ["all"]
    assert json.loads(query["query"][0])["filters"]["items"] == [
        {"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 0}
    ]


def test_unreachable_label_studio_is_a_label_studio_error() -> None:
    client = LabelStudioClient("http://127.0.0.1:9", "token-xyz", timeout=1, max_retries=0)
    with pytest.raises(LabelStudioError, match=r"GET http://127.0.0.1:9/api/projects/1 failed: ConnectError"):
        client.get_project(1)


def test_a_refused_token_says_which_setting_to_fix_and_why_it_may_have_changed(client: LabelStudioClient) -> None:
    rotated = LabelStudioClient(client.url, "rotated-token", timeout=5, max_retries=3)
    with pytest.raises(LabelStudioError) as error:
        rotated.get_project(7)
    message = str(error.value)
    assert "/api/projects/7 answered HTTP 401: Label Studio refused LABEL_STUDIO_API_KEY" in message
    assert "only on its first start" in message and "rotated-token" not in message
    assert [c[1] for c in FakeLabelStudio.calls] == ["/api/projects/7"]  # a 401 is not retried
