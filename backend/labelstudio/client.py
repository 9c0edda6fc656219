"""The Label Studio API calls the backend makes, on label-studio-sdk's HTTP layer.

The SDK supplies authentication (legacy tokens and Personal Access Tokens, which it
exchanges and refreshes), timeouts and retries with backoff on connection errors,
5xx and 429. Calls go through its raw JSON layer rather than the typed models,
which describe the Enterprise API and reject some Community 1.23 answers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from backend.errors import LabelStudioError

logger = logging.getLogger(__name__)

# Label Studio 1.23.2 on SQLite answers 500 ("Expression tree is too large") for pages of
# 1,000 uploaded-file tasks; 500 works.
TASK_PAGE_SIZE = 500
# Predictions per bulk import request: one request per round. Label Studio 1.23.2 recounts the
# predictions of every task of the project after each import request (its default, "legacy"
# import path), so the number of requests, not their size, is what costs: 200 predictions
# took 3.8 s in one request and 13.8 s in four at 100,000 tasks (docs/benchmarks.md).
PREDICTION_CHUNK = 1000
UNCERTAINTY_SAMPLING = "Uncertainty sampling"
# The Data Manager filter for tasks with at least one annotation that is not a skip.
LABELED_TASKS_QUERY = json.dumps(
    {
        "filters": {
            "conjunction": "and",
            "items": [
                {"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 0}
            ],
        }
    }
)


class LabelStudioClient:
    def __init__(
        self, url: str, api_key: str, *, timeout: float = 60.0, max_retries: int = 3, write_pause: float = 0.0
    ) -> None:
        self.url = url.rstrip("/")
        self.write_pause = write_pause  # seconds between two write requests of one batch
        self._sdk = LabelStudio(base_url=self.url, api_key=api_key, timeout=timeout, max_retries=max_retries)
        self._http = self._sdk._client_wrapper.httpx_client

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate a plain GET against Label Studio (media downloads)."""
        headers = self._sdk._client_wrapper.get_headers()
        return {"Authorization": headers["Authorization"]}

    def get_project(self, project_id: int) -> dict[str, Any]:
        return dict(self._call("GET", f"api/projects/{project_id}"))

    def iter_tasks(self, project_id: int, *, with_annotations: bool = True) -> Iterator[dict[str, Any]]:
        """Every task of the project, page by page: with its annotations, or only id and data (cheaper)."""
        return self._iter_task_pages({"project": project_id, "fields": "all" if with_annotations else "task_only"})

    def iter_labeled_tasks(self, project_id: int) -> Iterator[dict[str, Any]]:
        """Only the tasks that have an annotation, with their annotations: costs what is labeled."""
        return self._iter_task_pages({"project": project_id, "fields": "all", "query": LABELED_TASKS_QUERY})

    def _iter_task_pages(self, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            # resolve_uri=false: the raw URIs that /predict also receives, so cache keys agree.
            query = {**params, "resolve_uri": "false", "page": page, "page_size": TASK_PAGE_SIZE}
            answer = self._call("GET", "api/tasks", params=query, missing_ok=True)
            tasks = (answer or {}).get("tasks", []) if isinstance(answer, dict) else (answer or [])
            yield from tasks
            if len(tasks) < TASK_PAGE_SIZE:
                return
            page += 1

    def import_predictions(self, project_id: int, predictions: Sequence[dict[str, Any]]) -> int:
        created = 0
        for start in range(0, len(predictions), PREDICTION_CHUNK):
            if start:
                time.sleep(self.write_pause)
            chunk = list(predictions[start : start + PREDICTION_CHUNK])
            answer = self._call("POST", f"api/projects/{project_id}/import/predictions", json=chunk)
            created += int((answer or {}).get("created", 0))
        return created

    def serve_model_version(self, project_id: int, model_version: str) -> None:
        """Make "Label All Tasks" follow this version's scores, lowest first."""
        self._call(
            "PATCH",
            f"api/projects/{project_id}",
            json={"model_version": model_version, "sampling": UNCERTAINTY_SAMPLING},
        )

    def predictions(self, project_id: int) -> list[dict[str, Any]]:
        """Every prediction of the project ({"id", "task", "model_version", ...})."""
        return list(self._call("GET", "api/predictions/", params={"project": project_id}) or [])

    def delete_prediction(self, prediction_id: int) -> None:
        """One prediction, in a transaction of its own.

        Not DELETE /model-versions: that deletes a whole version in one transaction that
        updates every affected task row, and holds annotators' submits until it commits.
        """
        self._call("DELETE", f"api/predictions/{prediction_id}/", missing_ok=True)

    def ml_backends(self, project_id: int) -> list[dict[str, Any]]:
        return list(self._call("GET", "api/ml/", params={"project": project_id}) or [])

    def project_webhooks(self, project_id: int) -> list[dict[str, Any]]:
        answer = self._call("GET", "api/webhooks/", params={"project": project_id})
        return list(answer or [])

    def set_webhook_headers(self, webhook_id: int, headers: dict[str, str]) -> None:
        self._call("PATCH", f"api/webhooks/{webhook_id}/", json={"headers": headers})

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        missing_ok: bool = False,
    ) -> Any:
        try:
            response = self._http.request(path, method=method, params=params, json=json)
        except (httpx.HTTPError, ApiError) as error:
            raise LabelStudioError(f"{method} {self.url}/{path} failed: {type(error).__name__}: {error}") from None
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code == 401:
            raise LabelStudioError(
                f"{method} {self.url}/{path} answered HTTP 401: Label Studio refused LABEL_STUDIO_API_KEY. "
                "Paste a current token from Label Studio's Account & Settings; the compose Label Studio takes "
                "LABEL_STUDIO_API_KEY as its admin token only on its first start, so changing it in .env later "
                "does not change the token Label Studio accepts"
            )
        if response.status_code >= 400:
            raise LabelStudioError(
                f"{method} {self.url}/{path} answered HTTP {response.status_code}: {response.text[:300]}"
            )
        return response.json() if response.content else None
