"""The fine-tuning benchmark, run tiny: 32-px digits through the pretrained EfficientNet-Lite0."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.datasets import DatasetSplits
from bench.finetune_simulation import (
    FinetuneRun,
    FinetuneStream,
    PrefixSplits,
    embedded_splits,
    image_batches,
    main,
    prefix_splits,
    run_key,
    save_runs,
)
from bench.stream_simulation import Protocol, run_live_stream
from model.backbone import build_encoder
from model.finetune import EncoderSplit, FinetuneConfig, embed_features, split_encoder, train_tail

SIZE = 32
PROTOCOL = Protocol("live", n_labels=12, eval_every=2)
CONFIG = FinetuneConfig(epochs=3)


@pytest.fixture(scope="module")
def split() -> EncoderSplit:
    return split_encoder(build_encoder("efficientnet_lite0"), n_blocks=1)


def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """60 pool and 30 test images: scikit-learn's 8x8 digits as 0-255 grayscale."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * 255 / 16).astype(np.uint8)  # (1797, 8, 8)
    labels = digits.target.astype(np.int64)
    return images[:60], labels[:60], images[60:90], labels[60:90]


@pytest.fixture(scope="module")
def prefix(split: EncoderSplit) -> PrefixSplits:
    return prefix_splits("digits", _digits(), split, SIZE)


def _stream(prefix: PrefixSplits, split: EncoderSplit, training: str, every: int = 5) -> FinetuneStream:
    data = embedded_splits(prefix, split)
    return FinetuneStream(data, prefix, split, "alfamix", PROTOCOL, 0, training, every, CONFIG, SIZE)


def test_prefix_features_are_cached_by_name_and_the_pretrained_tail_embeds_like_the_encoder(
    prefix: PrefixSplits, split: EncoderSplit, tmp_path: Path
) -> None:
    assert prefix.x_pool.shape == (60, 192, 1, 1) and prefix.x_test.shape == (30, 192, 1, 1)  # 32 px: 1x1 maps
    cached = prefix_splits("digits", _digits(), split, SIZE, tmp_path / "digits.npy")
    x_pool, y_pool, x_test, y_test = _digits()
    blank = (np.zeros_like(x_pool), y_pool, np.zeros_like(x_test), y_test)

    again = prefix_splits("digits", blank, split, SIZE, tmp_path / "digits.npy")  # read, not recomputed

    assert torch.equal(cached.x_pool, prefix.x_pool) and torch.equal(again.x_test, prefix.x_test)
    data = embedded_splits(prefix, split)
    encoder = build_encoder("efficientnet_lite0")
    images = next(image_batches(x_pool[:4], SIZE))  # (4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(data.z_pool[:4]), encoder.module(images), atol=1e-5)


def test_embeddings_change_at_every_fifth_label_and_not_before(prefix: PrefixSplits, split: EncoderSplit) -> None:
    stream = _stream(prefix, split, "finetune")
    z0, z_test0 = stream.z.clone(), stream.data.z_test.copy()
    for task in range(4):
        stream.label(task)
    assert torch.equal(stream.z, z0) and np.array_equal(stream.data.z_test, z_test0)

    stream.label(4)

    assert not torch.equal(stream.z, z0) and not np.array_equal(stream.data.z_test, z_test0)
    assert torch.equal(torch.from_numpy(stream.data.z_pool), stream.z)  # rounds and evaluation see the same embeddings
    assert torch.equal(embed_features(split.tail, prefix.x_pool), z0)  # the pretrained tail is left as it was


def test_a_run_finetunes_every_five_labels_from_the_pretrained_tail(prefix: PrefixSplits, split: EncoderSplit) -> None:
    stream = _stream(prefix, split, "finetune")
    run = run_live_stream(stream)

    assert isinstance(run, FinetuneRun)
    assert (run.training, run.every, run.finetuned_at) == ("finetune", 5, [5, 10])  # floor(12 / 5) fine-tunes
    assert len(run.finetune_seconds) == len(run.embed_seconds) == 2 and run.config["epochs"] == 3
    assert run.n_labels == [0, 2, 4, 6, 8, 10, 12] and len(run.accuracy) == 7
    # The second fine-tune starts again from the pretrained tail, on the first ten labels.
    fresh = replace(split, tail=copy.deepcopy(split.tail))
    rows = np.array(stream.labeled[:10])
    train_tail(fresh, prefix.x_pool[rows], torch.from_numpy(prefix.y_pool[rows]), 10, CONFIG, torch.device("cpu"))
    assert torch.equal(stream.z, embed_features(fresh.tail, prefix.x_pool))


def test_finetune_is_head_only_until_the_first_finetune(prefix: PrefixSplits, split: EncoderSplit) -> None:
    head = run_live_stream(_stream(prefix, split, "head"))
    tuned = run_live_stream(_stream(prefix, split, "finetune"))
    never = run_live_stream(_stream(prefix, split, "finetune", every=13))

    assert (head.training, head.every, head.finetuned_at, head.config) == ("head", 0, [], {})
    assert tuned.accuracy[:3] == head.accuracy[:3]  # 0, 2 and 4 labels
    assert never.accuracy == head.accuracy and never.finetuned_at == []


def test_a_saved_run_is_replaced_by_a_rerun_of_its_key(tmp_path: Path) -> None:
    run = {
        "dataset": "toy",
        "size": 112,
        "n_pool": 60,
        "policy": "random",
        "training": "head",
        "every": 0,
        "config": {},
    }
    tuned = {**run, "training": "finetune", "every": 50, "config": {"epochs": 10}}
    save_runs([{**run, "seed": 0, "accuracy": [0.1]}, {**run, "seed": 1, "accuracy": [0.2]}], tmp_path / "runs.json")
    save_runs([{**run, "seed": 0, "accuracy": [0.3]}, {**tuned, "seed": 0, "accuracy": [0.4]}], tmp_path / "runs.json")

    saved = json.loads((tmp_path / "runs.json").read_text())["runs"]

    assert sorted((r["training"], r["seed"], r["accuracy"]) for r in saved) == [
        ("finetune", 0, [0.4]), ("head", 0, [0.3]), ("head", 1, [0.2])
    ]  # fmt: skip
    assert len({run_key(r) for r in saved}) == 3


def test_the_command_line_writes_runs_and_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--datasets", "mnist", "--policies", "random", "--modes", "head", "finetune", "--seeds", "0"]
    sizes = ["--size", "32", "--n-pool", "40", "--n-test", "20", "--n-labels", "20", "--every", "10", "--epochs", "1"]
    main([*argv, *sizes, "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "runs.json")])

    runs = json.loads((tmp_path / "runs.json").read_text())["runs"]
    assert [(r["training"], r["finetuned_at"], r["n_labels"]) for r in runs] == [
        ("head", [], [0, 20]),
        ("finetune", [10, 20], [0, 20]),
    ]
    assert len(list((tmp_path / "cache").glob("mnist_*_32px_blocks1_pool40_test20_seed0.npy"))) == 1
    assert capsys.readouterr().out.splitlines()[2].startswith("| mnist | 32 | random | every 10, 1 block(s), 1 epochs")


def test_an_unknown_mode_is_refused(prefix: PrefixSplits, split: EncoderSplit) -> None:
    data = DatasetSplits(
        "digits", np.zeros((60, 4), np.float32), prefix.y_pool, np.zeros((30, 4), np.float32), prefix.y_test
    )
    with pytest.raises(ValueError, match="training='full' should be one of head, projection, finetune"):
        FinetuneStream(data, prefix, split, "random", PROTOCOL, 0, "full")
