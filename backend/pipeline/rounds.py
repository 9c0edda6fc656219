"""One active-learning round for one project: labels in, a new ALFA-Mix queue out in Label Studio."""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypedDict

import numpy as np
import torch

from backend.errors import LabelStudioError
from backend.labelstudio.annotations import ProjectSnapshot, snapshot_tasks
from backend.labelstudio.label_config import ClassificationSpec, parse_label_config
from backend.labelstudio.ledger_sync import SyncReport, sync_ledger
from backend.labelstudio.predictions import bulk_predictions
from backend.pipeline.context import Context
from backend.pipeline.embedder import describe_device, embed_missing, load_tuned_encoder, missing_tasks, spread
from backend.pipeline.finetuning import prune_encoders, round_encoder_version, space_key
from backend.pipeline.heads import save_head
from backend.settings import Settings
from backend.state.embeddings import CachedEmbeddings
from backend.state.ledger import LabelLedger
from backend.state.records import RoundRecord, Stage
from backend.state.store import ProjectStore
from model.alfamix.stream import CarriedBatch, StreamConfig, StreamQueue, stream_queue
from model.head import HeadConfig, head_config_for, train_head

logger = logging.getLogger(__name__)

VERSION_PREFIX = "alfamix-"
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # which process ran a round, in its record
ROUND_EMBED_TASKS = 256  # unlabeled tasks a round embeds itself; embed jobs take the rest
PRUNE_SECONDS = 2.0  # one prune job deletes for this long, then yields to pending rounds


class StageReporter(Protocol):
    """Told each Stage as a job moves on, with counts while embedding."""

    def __call__(self, name: Stage, done: int | None = None, total: int | None = None) -> None: ...


def ignore_stage(name: Stage, done: int | None = None, total: int | None = None) -> None:
    pass


@dataclass(frozen=True)
class TrainingSet:
    """Embedded tasks of one snapshot, as arrays the model understands."""

    z_lab: torch.Tensor  # (L, D), one row per (task, label): multi-label tasks repeat
    y_lab: torch.Tensor  # (L,) int64
    labeled_task_ids: np.ndarray  # (T,) tasks behind the rows
    z_unl: torch.Tensor  # (N, D)
    unlabeled_task_ids: np.ndarray  # (N,)


def run_round(context: Context, project_id: int, stage: StageReporter = ignore_stage) -> RoundRecord:
    """Read labels, embed, train, rank, push predictions, then switch the project's queue to them."""
    stage(Stage.READING)
    settings = context.settings
    clock = _Clock()
    started_at = time.time()
    store = context.store(project_id)
    ledger, spec, snapshot, sync = read_ledger(context, project_id)
    clock.lap("read_seconds")

    stage(Stage.EMBEDDING)
    encoder_version = round_encoder_version(
        store, settings, snapshot.tasks, set(ledger.skipped()), can_embed=ROUND_EMBED_TASKS
    )
    runtime = load_tuned_encoder(settings, store, encoder_version)
    cache = store.embeddings(space_key(settings, encoder_version))
    # Every labeled task is embedded here, and at most ROUND_EMBED_TASKS unlabeled ones (a
    # worker new to the project); embed jobs embed the rest, and the round ranks what is embedded.
    n_labeled_missing = len(missing_tasks(snapshot.labeled, cache))
    report = embed_missing(
        project_id,
        [*snapshot.labeled, *spread(snapshot.unlabeled, project_id)],
        cache,
        runtime,
        context.fetcher,
        settings.max_image_pixels,
        progress=lambda done, total: stage(Stage.EMBEDDING, done, total),
        limit=n_labeled_missing + ROUND_EMBED_TASKS,
    )
    ledger.note_skipped(report.failed)
    ledger.save()
    cache.compact()
    data = _training_set(snapshot, cache.load())
    skipped, n_unembedded = _not_embedded(snapshot, data, ledger.skipped())
    clock.lap("embed_seconds")
    if len(data.unlabeled_task_ids) == 0:
        # Label Studio refuses to serve a version no prediction carries: keep the live one.
        logger.info("project %s: no unlabeled task is embedded; the queue stays as it is", project_id)
        record = RoundRecord(
            status="done",
            started_at=started_at,
            finished_at=time.time(),
            n_tasks=len(snapshot.tasks),
            n_labeled_tasks=len(data.labeled_task_ids),
            n_unembedded=n_unembedded,
            n_embedded=report.embedded,
            skipped_tasks=skipped,
            worker=WORKER,
            device=describe_device(runtime.device),
            encoder_version=encoder_version,
            **clock.laps,
        )
        store.append_round(record)
        return record

    stage(Stage.TRAINING)
    # Fine-tuning trains the encoder in its own job; a round trains a linear head on its embeddings.
    head_config = head_config_for(
        "head" if settings.training == "finetune" else settings.training, settings.head_epochs
    )
    head = train_head(data.z_lab, data.y_lab, len(spec.labels), head_config) if len(data.y_lab) else None
    clock.lap("train_seconds")
    stage(Stage.SCORING)
    previous = (store.live() or {}).get("model_version")
    carried = _carried_batch(store, previous, data.unlabeled_task_ids, settings.strategy)
    config = StreamConfig(strategy=settings.strategy, n_query=settings.n_query, audit_fraction=settings.audit_fraction)
    queue = stream_queue(data.z_lab, data.y_lab, data.z_unl, head, carried, config)
    probs = queue.probs  # (N, C), None before the first label
    clock.lap("query_seconds")

    model_version = _new_version(store.summary().n_rounds + 1)
    predicted = _top_class(probs, len(data.unlabeled_task_ids))  # (N,)
    _save_version(
        store,
        model_version,
        spec,
        head,
        head_config,
        data,
        queue,
        predicted,
        settings,
        encoder_version,
        report.embedded,
    )
    stage(Stage.PUSHING)
    # Only the front of the queue is written: the tasks annotators get next. Label Studio asks
    # /predict for any other task it opens without a prediction.
    front = queue.order[: settings.queue_head]  # (H,)
    predictions = bulk_predictions(
        spec,
        data.unlabeled_task_ids[front],
        probs[front] if probs is not None else None,
        queue.score[front],
        model_version,
    )
    created = context.client.import_predictions(project_id, predictions)
    if created != len(predictions):
        # Label Studio drops predictions it cannot match to the config and still answers 201.
        raise LabelStudioError(
            f"Label Studio stored {created} of {len(predictions)} predictions of {model_version}; "
            "the project keeps its previous version"
        )
    context.client.serve_model_version(project_id, model_version)
    store.set_live(model_version)
    for version in store.versions():  # their predictions in Label Studio go in the prune job
        if version not in {model_version, previous}:
            store.remove_version(version)
    prune_encoders(store, settings)
    clock.lap("push_seconds")

    record = RoundRecord(
        status="done",
        model_version=model_version,
        started_at=started_at,
        finished_at=time.time(),
        worker=WORKER,
        device=describe_device(runtime.device),
        n_tasks=len(snapshot.tasks),
        n_labeled_tasks=len(data.labeled_task_ids),
        n_unlabeled_tasks=len(data.unlabeled_task_ids),
        strategy=settings.strategy,
        training=settings.training,
        encoder_version=encoder_version,
        batch_kind=queue.batch_kind,
        batch_event=queue.batch_event,
        n_batch=len(queue.batch),
        n_candidates=int(queue.candidates.sum()),
        n_predictions=created,
        n_unembedded=n_unembedded,
        tasks_listed=sync.tasks_listed,
        labeled_listed=sync.labeled_listed,
        n_embedded=report.embedded,
        skipped_tasks=skipped,
        rejected_annotations={str(task_id): why for task_id, why in snapshot.rejected},
        queue_head=[int(t) for t in data.unlabeled_task_ids[queue.order[:10]]],
        **_compare_with_previous(
            store, previous, snapshot, data.unlabeled_task_ids[queue.batch], predicted[queue.batch]
        ),
        **clock.laps,
    )
    store.append_round(record)
    logger.info(
        "project %s: round done, %s live: %d labeled, %d predictions, %.1f s",
        project_id,
        model_version,
        record.n_labeled_tasks,
        created,
        clock.total,
    )
    return record


def read_ledger(
    context: Context, project_id: int
) -> tuple[LabelLedger, ClassificationSpec, ProjectSnapshot, SyncReport]:
    """The project's ledger, label config and tasks as the ledger has them, after a sync if due."""
    project = context.client.get_project(project_id)
    spec = parse_label_config(project.get("label_config") or "")
    ledger = context.ledger(project_id)
    sync = sync_ledger(context.client, project, ledger, context.settings.ledger_sync_seconds)
    return ledger, spec, snapshot_tasks(project_id, ledger.tasks(), spec), sync


def _not_embedded(snapshot: ProjectSnapshot, data: TrainingSet, skipped: dict[int, str]) -> tuple[dict[str, str], int]:
    """Tasks with an image but no embedding: those whose image failed (task id -> why), and
    how many others wait for an embed job."""
    embedded = {int(t) for t in data.labeled_task_ids} | {int(t) for t in data.unlabeled_task_ids}
    waiting = [t.task_id for t in snapshot.tasks if t.image_url is not None and t.task_id not in embedded]
    failed = {str(t): skipped[t] for t in waiting if t in skipped}
    return failed, len(waiting) - len(failed)


def _training_set(snapshot: ProjectSnapshot, cached: CachedEmbeddings) -> TrainingSet:
    """Rows of the cache for labeled and unlabeled tasks; tasks without an embedding are left out."""
    labeled = [t for t in snapshot.labeled if t.image_url is not None]
    unlabeled = [t for t in snapshot.unlabeled if t.image_url is not None]
    lab_rows = cached.rows_of(np.array([t.task_id for t in labeled], dtype=np.int64))
    unl_ids = np.array([t.task_id for t in unlabeled], dtype=np.int64)
    unl_rows = cached.rows_of(unl_ids)
    dim = cached.z.shape[1] if cached.z.ndim == 2 else 0
    rows: list[int] = []
    ys: list[int] = []
    task_ids: list[int] = []
    for task, row in zip(labeled, lab_rows, strict=True):
        if row >= 0:
            rows.extend([row] * len(task.labels))
            ys.extend(task.labels)
            task_ids.append(task.task_id)
    z_lab = torch.from_numpy(cached.z[np.array(rows, dtype=np.int64)]) if rows else torch.zeros(0, dim)
    keep = unl_rows >= 0
    return TrainingSet(
        z_lab=z_lab,
        y_lab=torch.tensor(ys, dtype=torch.int64),
        labeled_task_ids=np.array(task_ids, dtype=np.int64),
        z_unl=torch.from_numpy(cached.z[unl_rows[keep]]) if keep.any() else torch.zeros(0, dim),
        unlabeled_task_ids=unl_ids[keep],
    )


def _top_class(probs: np.ndarray | None, n: int) -> np.ndarray:
    return probs.argmax(axis=1) if probs is not None else np.full(n, -1, dtype=np.int64)


def _new_version(round_number: int) -> str:
    # The timestamp keeps names unique even if MODEL_DIR is wiped and numbering restarts.
    return f"{VERSION_PREFIX}{round_number}-{datetime.now(UTC):%Y%m%d%H%M%S}"


def _carried_batch(
    store: ProjectStore, previous: str | None, unlabeled_task_ids: np.ndarray, strategy: str
) -> CarriedBatch:
    """The live version's batch as indices into this round's pool: labeled (or deleted) members drop out.
    Nothing is carried over a change of ALFAMIX_STRATEGY."""
    meta = (store.load_meta(previous) if previous else None) or {}
    if meta.get("strategy", "alfamix") != strategy:
        return CarriedBatch.empty()
    position = {int(task): i for i, task in enumerate(unlabeled_task_ids)}

    def indices(task_ids: list[int]) -> np.ndarray:
        return np.array([position[t] for t in task_ids if t in position], dtype=np.int64)

    batch = meta.get("batch") or {}
    return CarriedBatch(
        members=indices(batch.get("task_ids", [])),
        audit=indices(batch.get("audit_task_ids", [])),
        kind=batch.get("kind", "alfamix"),
    )


def _save_version(
    store: ProjectStore,
    model_version: str,
    spec: ClassificationSpec,
    head: torch.nn.Module | None,
    head_config: HeadConfig,
    data: TrainingSet,
    queue: StreamQueue,
    predicted: np.ndarray,
    settings: Settings,
    encoder_version: str | None,
    n_embedded: int,
) -> None:
    if head is not None:
        save_head(store, model_version, head)
    store.save_queue(model_version, data.unlabeled_task_ids, predicted, queue.score)
    store.save_meta(
        model_version,
        {
            "labels": list(spec.labels),
            "label_fingerprint": spec.fingerprint,
            "encoder": settings.encoder,
            "encoder_key": space_key(settings, encoder_version),  # the embedding space the head was trained in
            "encoder_version": encoder_version,  # the fine-tuned encoder of that space; None: pretrained
            "strategy": settings.strategy,
            # What the next round carries: the batch at the head of this version's queue.
            "batch": {
                "kind": queue.batch_kind,
                "task_ids": data.unlabeled_task_ids[queue.batch].tolist(),
                "audit_task_ids": data.unlabeled_task_ids[queue.audit].tolist(),
            },
            "training": settings.training,
            "head": {"kind": head_config.kind, "hidden_dim": head_config.hidden_dim} if head is not None else None,
            "embedding_dim": int(data.z_unl.shape[1]) if data.z_unl.ndim == 2 else 0,
            "n_labeled_tasks": len(data.labeled_task_ids),
            "n_embedded_this_round": n_embedded,
            "created_at": time.time(),
        },
    )


def prune_predictions(context: Context, project_id: int, keep: set[str]) -> dict[str, int]:
    """Delete this backend's predictions of versions not in ``keep``, one request each with a
    pause between, for PRUNE_SECONDS at most; returns how many were deleted and left."""
    stale = [
        p["id"]
        for p in context.client.predictions(project_id)
        if str(p.get("model_version", "")).startswith(VERSION_PREFIX) and p.get("model_version") not in keep
    ]
    deadline = time.monotonic() + PRUNE_SECONDS
    deleted = 0
    for prediction_id in stale:  # at least one per job, so pruning always progresses
        context.client.delete_prediction(prediction_id)
        deleted += 1
        if time.monotonic() > deadline:
            break
        time.sleep(context.settings.write_pause)
    if stale:
        logger.info("project %s: %d old predictions deleted, %d left", project_id, deleted, len(stale) - deleted)
    return {"n_deleted": deleted, "n_left": len(stale) - deleted}


def _compare_with_previous(
    store: ProjectStore,
    previous: str | None,
    snapshot: ProjectSnapshot,
    head_ids: np.ndarray,
    head_predicted: np.ndarray,
) -> dict[str, Any]:
    """How the previous version did and how the new one differs from it.

    prelabel_accuracy: how often the class the previous version pre-selected was the one the
    annotator chose (labels submitted since it went live). audit_hits of n_audited: the same on
    the labeled tasks of its batch that were drawn at random, an unbiased sample of the pool.
    head_agreement: how often the two versions predict the same class on the new queue head
    (the batch annotators see next).
    """
    queue = store.load_queue(previous) if previous else None
    if queue is None:
        return {"n_prelabeled": 0, "prelabel_accuracy": None, "head_agreement": None, "n_audited": 0, "audit_hits": 0}
    predicted = dict(zip(queue["task_ids"].tolist(), queue["predicted"].tolist(), strict=True))
    audit = set(((store.load_meta(str(previous)) or {}).get("batch") or {}).get("audit_task_ids", []))
    judged = [t for t in snapshot.labeled if predicted.get(t.task_id, -1) >= 0]
    hits = [predicted[t.task_id] in t.labels for t in judged]
    audit_hits = [hit for t, hit in zip(judged, hits, strict=True) if t.task_id in audit]
    same = [
        predicted[t] == p
        for t, p in zip(head_ids.tolist(), head_predicted.tolist(), strict=True)
        if predicted.get(t, -1) >= 0 and p >= 0
    ]
    return {
        "n_prelabeled": len(hits),
        "prelabel_accuracy": float(np.mean(hits)) if hits else None,
        "head_agreement": float(np.mean(same)) if same else None,
        "n_audited": len(audit_hits),
        "audit_hits": int(sum(audit_hits)),
    }


class _Laps(TypedDict, total=False):
    read_seconds: float
    embed_seconds: float
    train_seconds: float
    query_seconds: float
    push_seconds: float


class _Clock:
    def __init__(self) -> None:
        self.laps: _Laps = {}
        self._start = self._last = time.perf_counter()

    def lap(
        self, name: Literal["read_seconds", "embed_seconds", "train_seconds", "query_seconds", "push_seconds"]
    ) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 3)
        self._last = now

    @property
    def total(self) -> float:
        return time.perf_counter() - self._start
