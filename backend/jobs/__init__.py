"""The jobs: one registry of kinds, who runs them (RQ or a thread), their locks, the catch-up, the worker.

The four functions below are the names versions before 0.2 enqueued in RQ, so that jobs
queued before an upgrade still run in the new worker (instead of failing and leaving their
project marked "pending" for ALFAMIX_ROUND_TIMEOUT).
"""

from __future__ import annotations

from typing import Any


def rq_round(project_id: int) -> dict[str, Any]:
    return _run_queued_before_0_2("round", project_id)


def rq_embed(project_id: int) -> dict[str, Any]:
    return _run_queued_before_0_2("embed", project_id)


def rq_prune(project_id: int) -> dict[str, Any]:
    return _run_queued_before_0_2("prune", project_id)


def rq_secure_webhooks(project_id: int) -> dict[str, Any]:
    return _run_queued_before_0_2("secure_webhooks", project_id)


def _run_queued_before_0_2(kind: str, project_id: int) -> dict[str, Any]:
    from backend.jobs.runner import rq_job  # the worker's pipeline, not loaded where jobs are only enqueued

    return rq_job(kind, project_id)
