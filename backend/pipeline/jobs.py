"""The job bodies: each takes a project id and fetches what it needs through the context.

backend/jobs/registry.py names them; backend/jobs/runner.py runs them under the project's lock.
"""

from __future__ import annotations

from typing import Any

from backend.labelstudio.webhooks import secure_webhooks
from backend.pipeline.context import Context
from backend.pipeline.embedder import embed_missing, load_tuned_encoder, spread
from backend.pipeline.finetuning import (
    finetune_due,
    finetune_encoder_version,
    newest_encoder,
    sample_labeled,
    space_key,
)
from backend.pipeline.rounds import StageReporter, ignore_stage, prune_predictions, read_ledger, run_round
from backend.state.records import Stage

EMBED_JOB_TASKS = 2048  # tasks one embed job takes on before it yields to pending rounds


def round_job(context: Context, project_id: int, stage: StageReporter = ignore_stage) -> dict[str, Any]:
    """One active-learning round; its result is the round's record, and whether a fine-tuning is due."""
    record = run_round(context, project_id, stage)
    due = finetune_due(context.store(project_id), context.settings, record.n_labeled_tasks)
    return {**record.to_dict(), "finetune_due": due}


def embed_job(context: Context, project_id: int, stage: StageReporter = ignore_stage) -> dict[str, Any]:
    """Embed up to EMBED_JOB_TASKS tasks the cache lacks; "more" asks for another embed job, so
    that rounds requested meanwhile run in between, and "needs_queue" asks for the cold-start
    round of a project that has no queue yet."""
    stage(Stage.READING)
    settings = context.settings
    ledger, _, snapshot, _ = read_ledger(context, project_id)
    store = context.store(project_id)
    # With a fine-tuned encoder, the pool is re-embedded in its space; rounds move there once it is filled.
    newest = newest_encoder(store, settings)
    version = newest["version"] if newest else None
    report = embed_missing(
        project_id,
        spread(snapshot.tasks, project_id),
        store.embeddings(space_key(settings, version)),
        load_tuned_encoder(settings, store, version),
        context.fetcher,
        settings.max_image_pixels,
        progress=lambda done, total: stage(Stage.EMBEDDING, done, total),
        limit=EMBED_JOB_TASKS,
    )
    ledger.note_skipped(report.failed)
    ledger.save()
    return {
        "status": "done",
        "n_embedded": report.embedded,
        "n_skipped": len(report.failed),
        "n_left": report.left,
        "more": report.left > 0,
        "needs_queue": report.embedded > 0 and store.live() is None,
        "space_filled": version is not None and report.embedded > 0 and report.left == 0,
    }


def finetune_job(context: Context, project_id: int, stage: StageReporter = ignore_stage) -> dict[str, Any]:
    """Fine-tune the encoder's last blocks on the labeled images, when ALFAMIX_FINETUNE_EVERY labeled
    tasks came since the last fine-tuning; "encoder_version" asks embed jobs to re-embed the pool."""
    stage(Stage.READING)
    settings = context.settings
    _, spec, snapshot, _ = read_ledger(context, project_id)
    labeled = [t for t in snapshot.labeled if t.image_url is not None]
    if not finetune_due(context.store(project_id), settings, len(labeled)):
        return {"status": "skipped", "reason": "not due"}
    stage(Stage.FINETUNING)
    sample = sample_labeled(labeled, settings.finetune_max_labels, project_id)
    return finetune_encoder_version(context, project_id, sample, len(spec.labels), len(labeled))


def prune_job(context: Context, project_id: int, stage: StageReporter = ignore_stage) -> dict[str, Any]:
    """Delete this backend's predictions of versions it no longer keeps, for PRUNE_SECONDS at most."""
    stage(Stage.PRUNING)
    report = prune_predictions(context, project_id, keep=set(context.store(project_id).versions()))
    return {"status": "done", **report, "more": report["n_left"] > 0}


def secure_webhooks_job(context: Context, project_id: int, stage: StageReporter = ignore_stage) -> dict[str, Any]:
    """Put the backend's basic auth on the project's webhooks to it (skipped when auth is off)."""
    settings = context.settings
    if not settings.basic_auth_user or not settings.basic_auth_pass:
        return {"status": "skipped", "reason": "basic auth is off"}
    return secure_webhooks(context.client, project_id, settings.basic_auth_user, settings.basic_auth_pass)
