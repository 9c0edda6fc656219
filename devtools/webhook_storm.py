"""A storm of ANNOTATION_CREATED webhooks sent to the backend at a steady rate from many threads, each answer timed.

The end-to-end test checks what the backend does with a storm; bench/bench_webhook_storm.py
measures how fast it answers one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests


@dataclass(frozen=True)
class WebhookAnswer:
    project_id: int
    status_code: int
    seconds: float


def send_storm(
    backend_url: str,
    project_ids: Sequence[int],
    events: int,
    window: float,
    threads: int,
    meanwhile: Callable[[], object] = lambda: None,
) -> list[WebhookAnswer]:
    """Sends ``events`` webhooks spread evenly over ``window`` seconds from ``threads`` threads; event i
    names ``project_ids[i % len(project_ids)]``. ``meanwhile`` runs in this thread during the storm
    (real labels, say). Returns the answers in the order the events were sent."""
    started = time.perf_counter()

    def send(index: int) -> WebhookAnswer:
        time.sleep(max(0.0, started + index * window / events - time.perf_counter()))
        project_id = project_ids[index % len(project_ids)]
        sent = time.perf_counter()
        answer = requests.post(
            f"{backend_url}/webhook",
            timeout=10,
            json={"action": "ANNOTATION_CREATED", "project": {"id": project_id}, "annotation": {"id": index}},
        )
        return WebhookAnswer(project_id, answer.status_code, time.perf_counter() - sent)

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(send, index) for index in range(events)]
        meanwhile()
        return [future.result() for future in futures]
