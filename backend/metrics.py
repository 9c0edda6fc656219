"""/metrics in the Prometheus text format.

Counters of this process (webhook events and their latency, predictions served) live in
memory; everything about rounds is derived from the round history in the project state at
scrape time, so it is the same whichever worker ran them. No label carries a secret.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from backend.redis_store import open_project_store, project_ids

WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)  # seconds
STAGE_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)  # seconds
STAGES = ("read", "embed", "train", "query", "push")


class Metrics:
    def __init__(self) -> None:
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self._webhook = _Histogram(WEBHOOK_BUCKETS)
        self._lock = threading.Lock()

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        with self._lock:
            self._counters[(name, tuple(sorted(labels.items())))] += amount

    def webhook(self, action: str, status: str, seconds: float) -> None:
        self.count("alfamix_webhook_events_total", action=action, status=status)
        with self._lock:
            self._webhook.observe(seconds)

    def render(self, model_dir: Path, connection: Redis | None, jobs: Callable[[int], dict[str, bool]]) -> str:
        """``jobs(project_id)`` says which jobs are pending or running (the queue depth)."""
        with self._lock:
            lines = [f"{name}{_labels(labels)} {value:g}" for (name, labels), value in sorted(self._counters.items())]
            lines += self._webhook.render("alfamix_webhook_seconds", ())
        try:
            for project_id in project_ids(model_dir, connection):
                store = open_project_store(model_dir, project_id, connection)
                lines += _project_lines(project_id, store.rounds(), (store.live() or {}).get("model_version"))
                lines += [
                    f"alfamix_jobs{_labels((('project', str(project_id)), ('state', state)))} {int(on)}"
                    for state, on in sorted(jobs(project_id).items())
                ]
            lines.append("alfamix_state_reachable 1")
        except RedisError:
            lines.append("alfamix_state_reachable 0")
        return "\n".join(lines) + "\n"


def _project_lines(project_id: int, rounds: Sequence[dict[str, Any]], live: str | None) -> list[str]:
    project = (("project", str(project_id)),)
    done = [r for r in rounds if r.get("status") == "done"]
    lines = [
        f"alfamix_rounds_total{_labels((*project, ('status', status)))} "
        f"{sum(1 for r in rounds if r.get('status') == status)}"
        for status in ("done", "failed")
    ]
    for stage in STAGES:
        seconds = [float(r[f"{stage}_seconds"]) for r in done if isinstance(r.get(f"{stage}_seconds"), int | float)]
        histogram = _Histogram(STAGE_BUCKETS)
        for value in seconds:
            histogram.observe(value)
        lines += histogram.render("alfamix_round_stage_seconds", (*project, ("stage", stage)))
    lines.append(f"alfamix_predictions_pushed_total{_labels(project)} {sum(r.get('n_predictions', 0) for r in done)}")
    lines.append(f"alfamix_tasks_embedded_total{_labels(project)} {sum(r.get('n_embedded', 0) for r in done)}")
    if live:
        lines.append(f"alfamix_live_model_info{_labels((*project, ('model_version', live)))} 1")
    return lines


class _Histogram:
    """Cumulative bucket counts, a sum and a count: constant memory however many observations."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.sum += value
        self.count += 1

    def render(self, name: str, labels: tuple[tuple[str, str], ...]) -> list[str]:
        lines = [
            f"{name}_bucket{_labels((*labels, ('le', f'{bound:g}')))} {n}"
            for bound, n in zip(self.buckets, self.counts, strict=True)
        ]
        lines.append(f"{name}_bucket{_labels((*labels, ('le', '+Inf')))} {self.count}")
        lines.append(f"{name}_sum{_labels(labels)} {self.sum:g}")
        lines.append(f"{name}_count{_labels(labels)} {self.count}")
        return lines


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    escaped = ",".join(
        f'{key}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for key, value in labels
    )
    return "{" + escaped + "}"
