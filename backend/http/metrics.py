"""/metrics with prometheus_client: every family declared with HELP text and a type.

Counters of this process (webhook events and their latency, predictions served) are
declared once. Per-project figures live in the project state, so a collector reads them
at scrape time from each project's history summary: one small read per project, whatever
the length of its history, and the same whichever worker ran the rounds. No label carries
a secret.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from backend.ml_backend import ALFAMixBackend
from backend.state.summary import STAGE_BUCKETS, HistorySummary

WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)  # seconds

disable_created_metrics()  # no *_created series: they double what a scraper stores and nobody reads them


class ServiceMetrics:
    """The registry /metrics renders; one per app, so tests and apps never share counters."""

    def __init__(self, backend: ALFAMixBackend) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.webhook_events = Counter(
            "alfamix_webhook_events",
            "Webhook events received, by Label Studio action and what the backend did with them.",
            ["action", "status"],
            registry=self.registry,
        )
        self.webhook_seconds = Histogram(
            "alfamix_webhook_seconds",
            "Time to answer a webhook.",
            buckets=WEBHOOK_BUCKETS,
            registry=self.registry,
        )
        self.predicted_tasks = Counter("alfamix_predicted_tasks", "Tasks answered by /predict.", registry=self.registry)
        self.registry.register(ProjectCollector(backend))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ProjectCollector(Collector):
    """Per-project figures from the project state, read at scrape time."""

    def __init__(self, backend: ALFAMixBackend) -> None:
        self.backend = backend

    def collect(self) -> Iterator[Metric]:
        rounds = CounterMetricFamily("alfamix_rounds", "Rounds ended, by outcome.", labels=["project", "status"])
        stages = HistogramMetricFamily(
            "alfamix_round_stage_seconds", "Time each part of a finished round took.", labels=["project", "stage"]
        )
        pushed = CounterMetricFamily(
            "alfamix_predictions_pushed", "Predictions rounds wrote to Label Studio.", labels=["project"]
        )
        embedded = CounterMetricFamily("alfamix_tasks_embedded", "Tasks rounds embedded.", labels=["project"])
        live = GaugeMetricFamily(
            "alfamix_live_model_info",
            "The model version Label Studio serves (always 1).",
            labels=["project", "model_version"],
        )
        jobs = GaugeMetricFamily("alfamix_jobs", "1 while a job is pending or running.", labels=["project", "state"])
        reachable = GaugeMetricFamily("alfamix_state_reachable", "1 when the project state (Redis) answered.")
        try:
            for project_id in self.backend.project_ids():
                project = str(project_id)
                store = self.backend.store(project_id)
                summary = store.summary()
                rounds.add_metric([project, "done"], summary.n_done)
                rounds.add_metric([project, "failed"], summary.n_failed)
                for part, (buckets, total) in _stage_histograms(summary).items():
                    stages.add_metric([project, part], buckets, total)
                pushed.add_metric([project], summary.n_predictions)
                embedded.add_metric([project], summary.n_embedded)
                if version := (store.live() or {}).get("model_version"):
                    live.add_metric([project, version], 1)
                for state, on in sorted(self.backend.dispatcher.status(project_id).items()):  # the queue depth
                    jobs.add_metric([project, state], int(on))
            reachable.add_metric([], 1)
        except RedisError:
            reachable.add_metric([], 0)
        yield from (rounds, stages, pushed, embedded, live, jobs, reachable)


def _stage_histograms(summary: HistorySummary) -> dict[str, tuple[list[tuple[str, float]], float]]:
    """Cumulative (le, count) buckets and the sum, per timed part of a round."""
    histograms = {}
    for part, histogram in summary.stage_seconds.items():
        bounds = [*(f"{b:g}" for b in STAGE_BUCKETS), "+Inf"]
        cumulative = [sum(histogram.counts[: i + 1]) for i in range(len(bounds))]
        histograms[part] = (list(zip(bounds, map(float, cumulative), strict=True)), histogram.total)
    return histograms
