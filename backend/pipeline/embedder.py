"""Embed tasks' images into the project's cache: download, decode, encode, append; never twice."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from backend.errors import MediaError
from backend.labelstudio.annotations import TaskRecord
from backend.labelstudio.media import MediaFetcher, decode_image
from backend.settings import Settings
from backend.state.embeddings import EmbeddingCache
from backend.state.lru import LRUCache
from backend.state.store import ProjectStore
from model.backbone import Encoder, build_encoder
from model.embedding import embed_images, pick_device
from model.finetune import tuned_encoder

logger = logging.getLogger(__name__)

CHUNK_TASKS = 256  # tasks downloaded and embedded per cache part: a crash loses at most one chunk
DOWNLOAD_THREADS = 8

TUNED_ENCODERS_KEPT = 2  # fine-tuned encoders kept in memory: the newest of a busy project, and one more
_loaded: dict[tuple[str, str | None, str], EncoderRuntime] = {}
_tuned: LRUCache[tuple[int, str], EncoderRuntime] = LRUCache(TUNED_ENCODERS_KEPT)
_loading = threading.Lock()


@dataclass
class EncoderRuntime:
    encoder: Encoder
    device: torch.device
    batch_size: int  # halved for good when a batch runs out of GPU memory

    def embed(self, images: list[Image.Image]) -> torch.Tensor:
        """(n, D) embeddings; on CUDA out-of-memory, retry with half the batch size, down to 1."""
        while True:
            try:
                return embed_images(self.encoder, images, device=self.device, batch_size=self.batch_size)
            except torch.cuda.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                self.batch_size //= 2
                logger.warning("out of GPU memory: embedding batch size lowered to %d", self.batch_size)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()


@dataclass
class EmbedReport:
    embedded: int = 0
    failed: dict[int, str] = field(default_factory=dict)  # task_id -> why it was skipped
    left: int = 0  # tasks still missing, beyond the limit of this call
    seconds: float = 0.0


def encoder_key(settings: Settings) -> str:
    """Names the embedding space: caches of different encoders or weights never mix."""
    return f"{settings.encoder}-{settings.encoder_weights or 'random'}"


def describe_device(device: torch.device) -> str:
    """ "cuda:0 (NVIDIA H200)" or "cpu": what logs, /health and round records show."""
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def load_encoder(settings: Settings) -> EncoderRuntime:
    """The process's encoder, built once (a worker keeps it between rounds)."""
    key = (settings.encoder, settings.encoder_weights, settings.device)
    with _loading:
        if key not in _loaded:
            with torch.random.fork_rng():
                torch.manual_seed(0)  # random-init encoders must agree across processes
                encoder = build_encoder(settings.encoder, settings.encoder_weights)
            device = pick_device(settings.device)
            if device.type == "cuda":  # bounds embedding and fine-tuning alike; beyond it, OutOfMemoryError
                torch.cuda.set_per_process_memory_fraction(settings.gpu_memory_fraction, device)
            _loaded[key] = EncoderRuntime(encoder, device, settings.embed_batch_size)
        return _loaded[key]


def load_tuned_encoder(settings: Settings, store: ProjectStore, encoder_version: str | None) -> EncoderRuntime:
    """The pretrained encoder (None), or a fine-tuned version of it as the project's store keeps it:
    a restarted worker resumes from the stored weights."""
    base = load_encoder(settings)
    if encoder_version is None:
        return base
    key = (store.project_id, encoder_version)
    with _loading:
        if (runtime := _tuned.get(key)) is None:
            raw = store.load_encoder(encoder_version)
            state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
            runtime = _tuned.put(key, EncoderRuntime(tuned_encoder(base.encoder, state), base.device, base.batch_size))
            logger.info("project %s: fine-tuned encoder %s loaded from the store", store.project_id, encoder_version)
        return runtime


def missing_tasks(records: Sequence[TaskRecord], cache: EmbeddingCache) -> list[TaskRecord]:
    """Tasks with an image URL that the cache lacks, or holds for a different URL."""
    cached = cache.load()
    wanted = [r for r in records if r.image_url is not None]
    ids = np.array([r.task_id for r in wanted], dtype=np.int64)
    rows = cached.rows_of(ids)
    return [r for r, row in zip(wanted, rows, strict=True) if row < 0 or cached.sources[row] != r.image_url]


def spread(records: Sequence[TaskRecord], project_id: int) -> list[TaskRecord]:
    """``records`` in a seeded random order, the same on every call: embedding them in it makes the
    first tasks embedded a random sample of the project, not its lowest ids (on an import sorted
    by class, those would start the cold-start queue inside one class)."""
    order = np.random.default_rng(project_id).permutation(len(records))
    return [records[i] for i in order]


def embed_missing(
    project_id: int,
    records: Sequence[TaskRecord],
    cache: EmbeddingCache,
    runtime: EncoderRuntime,
    fetcher: MediaFetcher,
    max_pixels: int,
    progress: Callable[[int, int], None] | None = None,
    limit: int | None = None,
) -> EmbedReport:
    """Embed the tasks the cache lacks (the first ``limit`` of them), chunk by chunk; a broken
    image skips its task only."""
    started = time.perf_counter()
    missing = missing_tasks(records, cache)
    todo = missing[:limit]
    report = EmbedReport(left=len(missing) - len(todo))
    with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
        for start in range(0, len(todo), CHUNK_TASKS):
            chunk = todo[start : start + CHUNK_TASKS]
            images = list(pool.map(lambda r: load_image(project_id, r, fetcher, max_pixels, report), chunk))
            kept = [(record, image) for record, image in zip(chunk, images, strict=True) if image is not None]
            if kept:
                z = runtime.embed([image for _, image in kept])  # (n, D)
                cache.add(
                    np.array([r.task_id for r, _ in kept], dtype=np.int64),
                    z.numpy(),
                    [r.image_url or "" for r, _ in kept],
                )
                report.embedded += len(kept)
            done = min(start + CHUNK_TASKS, len(todo))
            if progress is not None:
                progress(done, len(todo))
            if len(todo) > CHUNK_TASKS:  # long work says how far it got, one line per chunk
                rate = done / max(time.perf_counter() - started, 1e-9)
                logger.info("project %s: embedded %d/%d tasks (%.0f images/s)", project_id, done, len(todo), rate)
    report.seconds = time.perf_counter() - started
    if todo:
        logger.info(
            "project %s: embedded %d tasks (%d skipped) in %.1f s",
            project_id,
            report.embedded,
            len(report.failed),
            report.seconds,
        )
    return report


def load_image(
    project_id: int, record: TaskRecord, fetcher: MediaFetcher, max_pixels: int, report: EmbedReport
) -> Image.Image | None:
    assert record.image_url is not None
    try:
        return decode_image(record.task_id, fetcher.fetch(record.task_id, record.image_url), max_pixels)
    except MediaError as error:
        report.failed[record.task_id] = str(error)
        logger.warning("project %s: skipped: %s", project_id, error)
        return None
