"""Turn a stream of images into an (N, D) embedding matrix, one batch at a time.

The result is the ``z_lab`` / ``z_unl`` input of ALFA-Mix (arXiv:2203.07034).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import TypeAlias

import torch
from PIL import Image
from torch import nn

from model.backbone import Encoder
from model.errors import ModelInputError

logger = logging.getLogger(__name__)

ImageSource: TypeAlias = Image.Image | Callable[[], Image.Image]


def pick_device(preference: str = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; ``"cpu"``; ``"cuda"`` (must be available)."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise ModelInputError("device 'cuda' was asked for but torch sees no CUDA device")
        return torch.device("cuda")
    raise ModelInputError(f"device preference {preference!r} should be 'auto', 'cpu' or 'cuda'")


def embed_images(
    encoder: Encoder,
    images: Iterable[Image.Image] | Iterable[Callable[[], Image.Image]],
    *,
    device: torch.device | str,
    batch_size: int = 64,
    progress: Callable[[int, int | None], None] | None = None,
    total: int | None = None,
    mixed_precision: bool = True,
) -> torch.Tensor:
    """Embed ``images`` with ``encoder``: N images -> (N, D) float32 on the CPU.

    ``images`` yields PIL images or zero-argument callables returning one; a
    callable is only called when its batch is built, so at most ``batch_size``
    decoded images are alive at a time. ``device`` is where the encoder runs
    (the module is moved there, and left there, once); the result always comes
    back to the CPU as float32, whatever the device. On CUDA the encoder runs
    under fp16 autocast (``mixed_precision=False`` keeps float32) in channels_last
    with pinned host memory; elsewhere in float32. ``progress(done, total)`` is
    called after each batch; ``total`` defaults to ``len(images)`` when ``images``
    has a length.

    Example: 5 images, batch_size=2 -> progress (2, 5), (4, 5), (5, 5) and a
    (5, D) tensor. No images -> a (0, D) tensor.
    """
    if batch_size <= 0:
        raise ModelInputError(f"batch_size={batch_size} should be >= 1")
    if total is None and isinstance(images, Sized):
        total = len(images)
    if total is not None and total < 0:
        raise ModelInputError(f"total={total} should be >= 0")
    device = torch.device(device)
    module = encoder.module.to(device).eval()
    if device.type == "cuda":
        module = module.to(memory_format=torch.channels_last)

    chunks: list[torch.Tensor] = []
    done = 0
    with torch.inference_mode():
        for batch in _preprocessed_batches(images, encoder.preprocess, batch_size):
            z = _embed_batch(module, batch, device, mixed_precision)  # (b, D)
            if z.shape != (batch.shape[0], encoder.embedding_dim):
                raise ModelInputError(
                    f"encoder {encoder.name!r} returned shape {tuple(z.shape)} for a batch of "
                    f"{batch.shape[0]}; expected ({batch.shape[0]}, {encoder.embedding_dim})"
                )
            chunks.append(z)
            done += z.shape[0]
            logger.debug("embedded %d/%s images", done, total)
            if progress is not None:
                progress(done, total)
    # Concatenated outside inference_mode so the caller gets an ordinary tensor
    # it can use in autograd (ALFA-Mix differentiates the loss w.r.t. z).
    if not chunks:
        return torch.empty(0, encoder.embedding_dim)  # (0, D)
    return torch.cat(chunks)  # (N, D)


def _preprocessed_batches(
    images: Iterable[ImageSource],
    preprocess: Callable[[Image.Image], torch.Tensor],
    batch_size: int,
) -> Iterator[torch.Tensor]:
    """Yield (b, 3, H, W) CPU batches; decoded images are dropped once preprocessed."""
    batch: list[torch.Tensor] = []
    for index, source in enumerate(images):
        batch.append(preprocess(_load(source, index)))  # (3, H, W)
        if len(batch) == batch_size:
            yield torch.stack(batch)  # (batch_size, 3, H, W)
            batch = []
    if batch:
        yield torch.stack(batch)  # (b, 3, H, W), b < batch_size


def _load(source: ImageSource, index: int) -> Image.Image:
    image = source() if callable(source) else source
    if not isinstance(image, Image.Image):
        raise ModelInputError(
            f"image {index} is a {type(image).__name__}; expected a PIL image or a callable returning one"
        )
    return image


def _embed_batch(module: nn.Module, batch: torch.Tensor, device: torch.device, mixed_precision: bool) -> torch.Tensor:
    """(b, 3, H, W) CPU float32 -> (b, D) CPU float32."""
    if device.type == "cuda":
        # Pinned memory makes the copy asynchronous; channels_last and fp16 use tensor cores.
        x = batch.pin_memory().to(device, non_blocking=True, memory_format=torch.channels_last)
        with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=mixed_precision):
            z = module(x)  # (b, D) float16 under autocast
    else:
        z = module(batch.to(device))  # (b, D)
    return z.float().cpu()  # (b, D)
