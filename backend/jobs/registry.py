"""Every job kind, in one place: the pipeline function that runs it and the jobs it asks for next.

Functions are named by dotted path and imported only where jobs run (an RQ worker, or the
embedded job thread), so the web process that enqueues them never loads the training stack.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from enum import StrEnum
from typing import Any


class JobKind(StrEnum):
    ROUND = "round"  # train, rank, push the queue
    EMBED = "embed"  # embed tasks the cache lacks
    FINETUNE = "finetune"  # fine-tune the encoder's last blocks (ALFAMIX_TRAINING=finetune)
    PRUNE = "prune"  # delete predictions of versions no longer kept
    SECURE_WEBHOOKS = "secure_webhooks"  # put the backend's basic auth on the project's webhooks


# Each takes (context, project_id, stage reporter) and returns a JSON-able result.
JOB_FUNCTIONS: dict[JobKind, str] = {
    JobKind.ROUND: "backend.pipeline.jobs:round_job",
    JobKind.EMBED: "backend.pipeline.jobs:embed_job",
    JobKind.FINETUNE: "backend.pipeline.jobs:finetune_job",
    JobKind.PRUNE: "backend.pipeline.jobs:prune_job",
    JobKind.SECURE_WEBHOOKS: "backend.pipeline.jobs:secure_webhooks_job",
}


def job_function(kind: JobKind) -> Callable[..., dict[str, Any]]:
    module, name = JOB_FUNCTIONS[kind].split(":")
    function: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), name)
    return function


def follow_ups(kind: JobKind, result: dict[str, Any]) -> list[JobKind]:
    """Jobs to request when one ends: a new queue leaves old predictions to prune, tasks a round
    found without embeddings ask for an embed job, the first embedded tasks of a project with no
    queue ask for the round that pushes its cold-start queue, and a job that stopped at its
    limit ("more") asks for itself again. With fine-tuning: a round that finds one due asks for
    it, a new encoder version asks embed jobs to re-embed the pool, and the embed job that fills
    its space asks for the round that moves the queue there."""
    kinds = [JobKind.PRUNE] if kind == JobKind.ROUND and result.get("model_version") else []
    if kind == JobKind.ROUND and result.get("n_unembedded"):
        kinds.append(JobKind.EMBED)
    if kind == JobKind.ROUND and result.get("finetune_due"):
        kinds.append(JobKind.FINETUNE)
    if kind == JobKind.FINETUNE and result.get("encoder_version"):
        kinds.append(JobKind.EMBED)
    if kind == JobKind.EMBED and (result.get("needs_queue") or result.get("space_filled")):
        kinds.append(JobKind.ROUND)
    return [*kinds, kind] if result.get("more") else kinds
