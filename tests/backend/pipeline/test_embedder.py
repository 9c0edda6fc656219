"""EncoderRuntime.embed backs off on GPU out-of-memory, and the cache never embeds a task twice."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from backend.labelstudio.annotations import TaskRecord
from backend.pipeline.embedder import EncoderRuntime, embed_missing, missing_tasks
from backend.state.files import EmbeddingCache
from model.backbone import Encoder


class MeanColour(nn.Module):
    """A 3-d "encoder": the mean of each channel. Raises CUDA OOM for batches above ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(len(x))
        if len(x) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return x.mean(dim=(2, 3))  # (B, 3)


def runtime(limit: int, batch_size: int) -> EncoderRuntime:
    def preprocess(image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)

    encoder = Encoder(module=MeanColour(limit), preprocess=preprocess, embedding_dim=3, name="mean")
    return EncoderRuntime(encoder, torch.device("cpu"), batch_size)


def grey(level: int) -> Image.Image:
    return Image.new("L", (4, 4), color=level)


def test_out_of_memory_halves_the_batch_until_it_fits_and_keeps_it() -> None:
    run = runtime(limit=5, batch_size=32)
    z = run.embed([grey(i) for i in range(12)])
    assert z[:, 0].tolist() == [float(i) for i in range(12)]
    assert run.batch_size == 4  # 32 -> 16 -> 8 -> 4
    assert run.encoder.module.batch_sizes == [12, 12, 8, 4, 4, 4]  # type: ignore[union-attr]
    run.embed([grey(1)] * 6)
    assert run.batch_size == 4


def test_out_of_memory_at_batch_size_one_is_raised() -> None:
    with pytest.raises(torch.cuda.OutOfMemoryError):
        runtime(limit=0, batch_size=2).embed([grey(1)])


class Fetcher:
    def __init__(self) -> None:
        self.fetched: list[int] = []

    def fetch(self, task_id: int, uri: str) -> bytes:
        self.fetched.append(task_id)
        buffer = io.BytesIO()
        grey(task_id).save(buffer, format="PNG")
        return buffer.getvalue()


def test_a_task_is_embedded_once_unless_its_image_url_changes(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    fetcher = Fetcher()
    records = [TaskRecord(t, f"/data/upload/{t}.png", ()) for t in (1, 2, 3)]
    first = embed_missing(1, records, cache, runtime(100, 8), fetcher, 10_000)  # type: ignore[arg-type]
    second = embed_missing(1, records, cache, runtime(100, 8), fetcher, 10_000)  # type: ignore[arg-type]
    assert (first.embedded, second.embedded) == (3, 0)
    moved = [TaskRecord(2, "/data/upload/2-new.png", ())]
    assert [r.task_id for r in missing_tasks(moved, cache)] == [2]
    assert fetcher.fetched == [1, 2, 3]
    assert cache.load().z[:, 0].tolist() == [1.0, 2.0, 3.0]
