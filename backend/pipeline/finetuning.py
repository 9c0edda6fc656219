"""ALFAMIX_TRAINING=finetune: fine-tune the encoder's last blocks on the labels, and move the
project to the embedding space of the tuned encoder once that space is filled.

Every ALFAMIX_FINETUNE_EVERY labeled tasks a round asks for a fine-tune job. The job downloads
the labeled images, fine-tunes a copy of the pretrained encoder (model/finetune.py) and stores
the tuned entries as an encoder version, beside the model versions. Embed jobs then re-embed
the pool with it, into a cache of its own; until that cache is filled, rounds keep ranking in
the space of the live version, so a queue is never built from half of the pool. A worker that
restarts loads the stored weights again: nothing of a fine-tuning lives only in memory.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch
from PIL import Image

from backend.labelstudio.annotations import TaskRecord
from backend.pipeline.context import Context
from backend.pipeline.embedder import (
    DOWNLOAD_THREADS,
    EmbedReport,
    describe_device,
    encoder_key,
    load_encoder,
    load_image,
    missing_tasks,
)
from backend.settings import Settings
from backend.state.store import ProjectStore
from model.errors import ModelInputError
from model.finetune import FinetuneConfig, finetune_encoder

logger = logging.getLogger(__name__)

TUNED = "tuned"  # status of an encoder version with weights
# Statuses of attempts that left no weights: kept so that the next rounds do not ask again at once.
OUT_OF_MEMORY = "out_of_memory"
FAILED = "failed"  # e.g. no labeled image could be read


def space_key(settings: Settings, encoder_version: str | None) -> str:
    """The embedding cache of the pretrained encoder (None) or of one of its fine-tuned versions."""
    base = encoder_key(settings)
    return base if encoder_version is None else f"{base}.{encoder_version}"


def in_encoder_space(key: str, settings: Settings) -> bool:
    """Whether embeddings of space ``key`` come from ALFAMIX_ENCODER, pretrained or fine-tuned."""
    base = encoder_key(settings)
    return key == base or key.startswith(f"{base}.")


def newest_encoder(
    store: ProjectStore, settings: Settings, metas: list[dict[str, Any]] | None = None
) -> dict[str, Any] | None:
    """Meta of the newest fine-tuned version of ALFAMIX_ENCODER (among ``metas``, by default the
    store's); None outside finetune mode."""
    if settings.training != "finetune":
        return None
    metas = store.encoders() if metas is None else metas
    tuned = [m for m in metas if m["status"] == TUNED and m["base"] == encoder_key(settings)]
    return tuned[-1] if tuned else None


def finetune_due(store: ProjectStore, settings: Settings, n_labeled_tasks: int) -> bool:
    """ALFAMIX_FINETUNE_EVERY labeled tasks came since the last fine-tuning (or attempt)."""
    if settings.training != "finetune":
        return False
    attempts = [m for m in store.encoders() if m["base"] == encoder_key(settings)]
    last = attempts[-1]["n_labeled_tasks"] if attempts else 0
    return n_labeled_tasks - last >= settings.finetune_every


def round_encoder_version(
    store: ProjectStore, settings: Settings, tasks: Sequence[TaskRecord], skipped: set[int], can_embed: int
) -> str | None:
    """The encoder version a round ranks with: the newest, once its cache lacks at most ``can_embed``
    tasks (the round embeds those itself); until then the live version's, so that the queue stays
    in one filled space."""
    metas = store.encoders()
    newest = newest_encoder(store, settings, metas)
    if newest is None:
        return None
    cache = store.embeddings(space_key(settings, newest["version"]))
    lacking = [t for t in missing_tasks(tasks, cache) if t.task_id not in skipped]
    if len(lacking) <= can_embed:
        return str(newest["version"])
    live = (store.live() or {}).get("model_version")
    version = ((store.load_meta(live) if live else None) or {}).get("encoder_version")
    return version if version in {m["version"] for m in metas} else None


def prune_encoders(store: ProjectStore, settings: Settings) -> list[str]:
    """Remove encoder versions, and their caches, that no kept model version uses, but the newest
    tuned one and the last attempt."""
    metas = store.encoders()
    if not metas:  # every round calls this: without fine-tuning, one listing and nothing more
        return []
    newest = newest_encoder(store, settings, metas)
    keep = {m.get("encoder_version") for m in map(store.load_meta, store.versions()) if m}
    keep |= {newest["version"] if newest else None, metas[-1]["version"] if metas else None}
    removed = [m["version"] for m in metas if m["version"] not in keep]
    for version in removed:
        store.remove_encoder(version)
        store.remove_embeddings(space_key(settings, version))
    return removed


def finetune_encoder_version(
    context: Context, project_id: int, labeled: list[TaskRecord], n_classes: int, n_labeled_tasks: int
) -> dict[str, Any]:
    """Fine-tune a copy of the pretrained encoder on the labeled tasks' images and store it as a new
    encoder version; out of GPU memory, store the attempt instead, and the rounds go on as they were."""
    settings = context.settings
    store = context.store(project_id)
    runtime = load_encoder(settings)  # every fine-tuning starts from the pretrained encoder
    config = FinetuneConfig(n_blocks=settings.finetune_blocks, epochs=settings.finetune_epochs)
    report = EmbedReport()
    started = time.perf_counter()
    meta: dict[str, Any] = {
        "version": _new_encoder_version(len(store.encoders()) + 1),
        "base": encoder_key(settings),
        "n_labeled_tasks": n_labeled_tasks,
        "n_blocks": config.n_blocks,
        "epochs": config.epochs,
        "device": describe_device(runtime.device),
    }
    batches = _labeled_batches(context, project_id, labeled, runtime.encoder.preprocess, config.batch_size, report)
    try:
        state = finetune_encoder(runtime.encoder, batches, n_classes, config, runtime.device, project_id)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        logger.warning(
            "project %s: fine-tuning %d blocks on %d labeled tasks ran out of GPU memory "
            "(ALFAMIX_GPU_MEMORY_FRACTION=%s); rounds go on training the head only, for %d more labels",
            project_id,
            config.n_blocks,
            len(labeled),
            settings.gpu_memory_fraction,
            settings.finetune_every,
        )
        store.save_encoder(meta | {"status": OUT_OF_MEMORY, "created_at": time.time()}, b"")
        return {"status": OUT_OF_MEMORY}
    except ModelInputError as error:
        logger.error("project %s: fine-tuning on %d labeled tasks failed: %s", project_id, len(labeled), error)
        store.save_encoder(meta | {"status": FAILED, "error": str(error), "created_at": time.time()}, b"")
        return {"status": FAILED, "error": str(error)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    meta |= {
        "status": TUNED,
        "n_images": len(labeled) - len(report.failed),
        "seconds": round(time.perf_counter() - started, 3),
        "created_at": time.time(),
    }
    store.save_encoder(meta, buffer.getvalue())
    prune_encoders(store, settings)
    logger.info(
        "project %s: encoder %s fine-tuned on %d labeled tasks in %.1f s on %s; embed jobs re-embed the pool",
        project_id,
        meta["version"],
        meta["n_images"],
        meta["seconds"],
        meta["device"],
    )
    return {
        "status": "done",
        "encoder_version": meta["version"],
        "n_images": meta["n_images"],
        "seconds": meta["seconds"],
    }


def sample_labeled(labeled: list[TaskRecord], limit: int, project_id: int) -> list[TaskRecord]:
    """At most ``limit`` of the labeled tasks, a seeded random sample beyond."""
    if len(labeled) <= limit:
        return labeled
    rows = np.random.default_rng([project_id, len(labeled)]).choice(len(labeled), limit, replace=False)
    return [labeled[i] for i in sorted(rows)]


def _labeled_batches(
    context: Context,
    project_id: int,
    tasks: list[TaskRecord],
    preprocess: Callable[[Image.Image], torch.Tensor],
    batch_size: int,
    report: EmbedReport,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) batches, downloaded and decoded one batch at a time; a multi-label task gives one
    row per label, and a broken image skips its task."""
    settings = context.settings
    with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
        for start in range(0, len(tasks), batch_size):
            chunk = tasks[start : start + batch_size]
            images = pool.map(
                lambda t: load_image(project_id, t, context.fetcher, settings.max_image_pixels, report), chunk
            )
            rows = [
                (preprocess(image), label)
                for task, image in zip(chunk, images, strict=True)
                if image
                for label in task.labels
            ]
            if rows:
                x = torch.stack([x for x, _ in rows])  # (b, 3, H, W)
                yield x, torch.tensor([y for _, y in rows], dtype=torch.int64)  # (b,)


def _new_encoder_version(number: int) -> str:
    return f"ft{number}-{datetime.now(UTC):%Y%m%d%H%M%S}"
