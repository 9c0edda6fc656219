"""embed_images: shapes, streaming, progress, determinism, batch-size invariance; pick_device."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterator

import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.transforms.functional import to_tensor

from model.backbone import Encoder, build_encoder
from model.embedding import embed_images, pick_device
from model.errors import ModelInputError


def _tiny_preprocess(image: Image.Image) -> torch.Tensor:
    return to_tensor(image.convert("RGB").resize((8, 8)))  # (3, 8, 8)


@pytest.fixture
def tiny_encoder() -> Encoder:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, kernel_size=3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Encoder(module=module, preprocess=_tiny_preprocess, embedding_dim=4, name="tiny")


@pytest.fixture(scope="module")
def lite0() -> Encoder:
    return build_encoder("efficientnet_lite0", weights="DEFAULT")


def _colour_images(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (12, 10), color=(40 * i, 255 - 30 * i, 7 * i)) for i in range(n)]


class _CountingLoader:
    """Makes image loaders that count how many decoded images are alive at once."""

    def __init__(self) -> None:
        self.loaded = 0
        self.live = 0
        self.max_live = 0

    def loaders(self, n: int) -> Iterator[Callable[[], Image.Image]]:
        for i in range(n):
            yield functools.partial(self._load, i)

    def _load(self, i: int) -> Image.Image:
        image = Image.new("RGB", (12, 10), color=(40 * i, 255 - 30 * i, 7 * i))
        self.loaded += 1
        self.live += 1
        self.max_live = max(self.max_live, self.live)
        weakref.finalize(image, self._release)
        return image

    def _release(self) -> None:
        self.live -= 1


def test_embed_images_returns_n_by_d_float32_on_cpu(tiny_encoder: Encoder) -> None:
    z = embed_images(tiny_encoder, _colour_images(5), device="cpu", batch_size=2)  # (5, 4)

    assert z.shape == (5, 4)
    assert z.dtype == torch.float32
    assert z.device == torch.device("cpu")
    assert not z.is_inference()


def test_embed_images_keeps_input_order(tiny_encoder: Encoder) -> None:
    images = _colour_images(5)

    z = embed_images(tiny_encoder, images, device="cpu", batch_size=2)  # (5, 4)

    for i, image in enumerate(images):
        alone = embed_images(tiny_encoder, [image], device="cpu")  # (1, 4)
        torch.testing.assert_close(z[i : i + 1], alone, rtol=0, atol=1e-6)


def test_embed_images_of_nothing_is_zero_by_d(tiny_encoder: Encoder) -> None:
    calls: list[tuple[int, int | None]] = []

    z = embed_images(tiny_encoder, [], device="cpu", progress=lambda d, t: calls.append((d, t)))

    assert z.shape == (0, 4)
    assert z.dtype == torch.float32
    assert calls == []


def test_embed_images_streams_at_most_batch_size_decoded_images(
    tiny_encoder: Encoder,
) -> None:
    loader = _CountingLoader()
    loaded_at_progress: list[int] = []

    z = embed_images(
        tiny_encoder,
        loader.loaders(7),
        device="cpu",
        batch_size=3,
        progress=lambda done, total: loaded_at_progress.append(loader.loaded),
    )

    assert z.shape == (7, 4)
    assert loader.max_live <= 3
    assert loader.live == 0
    # Each batch is embedded before the next one is decoded.
    assert loaded_at_progress == [3, 6, 7]


def test_progress_is_called_after_each_batch_with_done_and_total(
    tiny_encoder: Encoder,
) -> None:
    calls: list[tuple[int, int | None]] = []
    generator = (image for image in _colour_images(5))

    embed_images(
        tiny_encoder,
        generator,
        device="cpu",
        batch_size=2,
        total=5,
        progress=lambda done, total: calls.append((done, total)),
    )

    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_progress_total_defaults_to_len_or_none(tiny_encoder: Encoder) -> None:
    from_list: list[tuple[int, int | None]] = []
    from_generator: list[tuple[int, int | None]] = []

    embed_images(
        tiny_encoder,
        _colour_images(3),
        device="cpu",
        batch_size=2,
        progress=lambda d, t: from_list.append((d, t)),
    )
    embed_images(
        tiny_encoder,
        iter(_colour_images(3)),
        device="cpu",
        batch_size=2,
        progress=lambda d, t: from_generator.append((d, t)),
    )

    assert from_list == [(2, 3), (3, 3)]
    assert from_generator == [(2, None), (3, None)]


@pytest.mark.parametrize("batch_size", [0, -1])
def test_non_positive_batch_size_raises(tiny_encoder: Encoder, batch_size: int) -> None:
    with pytest.raises(ModelInputError, match=f"batch_size={batch_size} should be >= 1"):
        embed_images(tiny_encoder, _colour_images(1), device="cpu", batch_size=batch_size)


def test_non_image_input_raises_with_its_index(tiny_encoder: Encoder) -> None:
    images = [*_colour_images(2), "not-an-image.png"]

    with pytest.raises(ModelInputError, match="image 2 is a str"):
        embed_images(tiny_encoder, images, device="cpu")  # type: ignore[arg-type]


def test_embeddings_are_deterministic(lite0: Encoder) -> None:
    images = _colour_images(3)

    first = embed_images(lite0, images, device="cpu", batch_size=2)  # (3, 1280)
    second = embed_images(lite0, images, device="cpu", batch_size=2)  # (3, 1280)

    assert torch.equal(first, second)


def test_embeddings_do_not_depend_on_batch_size(lite0: Encoder) -> None:
    images = _colour_images(4)

    one_by_one = embed_images(lite0, images, device="cpu", batch_size=1)  # (4, 1280)
    all_at_once = embed_images(lite0, images, device="cpu", batch_size=4)  # (4, 1280)

    torch.testing.assert_close(one_by_one, all_at_once, rtol=0, atol=1e-5)


def test_grayscale_image_is_accepted(lite0: Encoder) -> None:
    gray = Image.new("L", (20, 16), color=90)
    rgb = Image.new("RGB", (20, 16), color=(90, 90, 90))

    z = embed_images(lite0, [gray, rgb], device="cpu")  # (2, 1280)

    assert z.shape == (2, 1280)
    torch.testing.assert_close(z[0], z[1], rtol=0, atol=1e-6)


def test_pick_device_cpu_and_auto() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto") == torch.device(expected)


def test_pick_device_cuda_without_cuda_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    with pytest.raises(ModelInputError, match="no CUDA device"):
        pick_device("cuda")


def test_pick_device_unknown_preference_raises() -> None:
    with pytest.raises(ModelInputError, match="'tpu' should be 'auto', 'cpu' or 'cuda'"):
        pick_device("tpu")
