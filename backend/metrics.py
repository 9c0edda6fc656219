"""Counters for /metrics in the Prometheus text format; project state is read from MODEL_DIR."""

from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from backend.redis_store import open_project_store, project_ids


class Metrics:
    def __init__(self) -> None:
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self._lock = threading.Lock()

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        with self._lock:
            self._counters[(name, tuple(sorted(labels.items())))] += amount

    def webhook(self, action: str, status: str, seconds: float) -> None:
        self.count("alfamix_webhook_events_total", action=action, status=status)
        self.count("alfamix_webhook_seconds_sum", seconds)
        self.count("alfamix_webhook_seconds_count")

    def render(self, model_dir: Path, connection: Redis | None) -> str:
        with self._lock:
            lines = [f"{name}{_labels(labels)} {value:g}" for (name, labels), value in sorted(self._counters.items())]
        try:
            lines += self._project_lines(model_dir, connection)
            lines.append("alfamix_state_reachable 1")
        except RedisError:
            lines.append("alfamix_state_reachable 0")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _project_lines(model_dir: Path, connection: Redis | None) -> list[str]:
        lines = []
        for project_id in project_ids(model_dir, connection):
            store = open_project_store(model_dir, project_id, connection)
            rounds = store.rounds()
            for status in ("done", "failed"):
                n = sum(1 for r in rounds if r.get("status") == status)
                lines.append(f'alfamix_rounds_total{{project="{project_id}",status="{status}"}} {n}')
            live = (store.live() or {}).get("model_version")
            if live:
                lines.append(f'alfamix_live_model_info{{project="{project_id}",model_version="{live}"}} 1')
        return lines


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    escaped = ",".join(
        f'{key}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for key, value in labels
    )
    return "{" + escaped + "}"
