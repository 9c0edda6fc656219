"""ALFAMIX_TRAINING=finetune with a small in-memory Label Studio: when a fine-tuning runs, how the
queue moves to the tuned encoder's space, what a restart reloads, and what running out of GPU
memory leaves behind."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from backend.jobs.registry import JobKind, follow_ups
from backend.labelstudio import ledger_sync
from backend.labelstudio.label_config import parse_label_config
from backend.pipeline import embedder, finetuning, jobs, rounds
from backend.pipeline.context import Context
from backend.pipeline.embedder import encoder_key, load_tuned_encoder
from backend.pipeline.finetuning import in_encoder_space, space_key
from backend.pipeline.predictor import Predictor
from backend.settings import Settings
from backend.state.files import FileProjectStore
from tests.backend.pipeline.test_rounds import CONFIG, BrokenFetcher, FakeFetcher, FakeLabelStudio

PROJECT = 5
EVERY = 4


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Context, FakeLabelStudio, FileProjectStore]:
    settings = Settings(
        model_dir=tmp_path,
        encoder="resnet18",
        encoder_weights=None,
        device="cpu",
        n_query=4,
        write_pause=0.0,
        training="finetune",
        finetune_every=EVERY,
        finetune_epochs=2,
    )
    # 20 tasks: the round embeds at most 5 itself, so a new space waits for the embed job.
    monkeypatch.setattr(rounds, "ROUND_EMBED_TASKS", 5)
    monkeypatch.setattr(ledger_sync, "LABELS_RETRY_SECONDS", 0.0)  # labels come by listing, not webhooks
    fake = FakeLabelStudio()
    context = Context(settings, fake, FakeFetcher())  # type: ignore[arg-type]
    return context, fake, FileProjectStore(tmp_path, PROJECT)


def label(fake: FakeLabelStudio, task_ids: list[int]) -> None:
    fake.labels |= {t: "dark" if t <= 10 else "light" for t in task_ids}


def test_the_queue_moves_to_the_tuned_space_once_the_pool_is_re_embedded(setup: Any) -> None:
    context, fake, store = setup
    jobs.embed_job(context, PROJECT)
    label(fake, [1, 2, 11])
    first = jobs.round_job(context, PROJECT)
    assert first["finetune_due"] is False and JobKind.FINETUNE not in follow_ups(JobKind.ROUND, first)

    label(fake, [12])  # the 4th labeled task: a fine-tuning is due
    second = jobs.round_job(context, PROJECT)
    assert second["finetune_due"] is True and JobKind.FINETUNE in follow_ups(JobKind.ROUND, second)
    tuned = jobs.finetune_job(context, PROJECT)
    version = tuned["encoder_version"]
    assert (tuned["status"], tuned["n_images"], follow_ups(JobKind.FINETUNE, tuned)) == ("done", 4, [JobKind.EMBED])
    [meta] = store.encoders()
    assert (meta["version"], meta["status"], meta["n_labeled_tasks"], meta["n_blocks"]) == (version, "tuned", 4, 1)
    assert meta["base"] == "resnet18-random" and meta["device"] == "cpu"
    assert jobs.finetune_job(context, PROJECT) == {"status": "skipped", "reason": "not due"}

    # The tuned space lacks 20 tasks, more than a round embeds: rounds stay in the live space.
    waiting = jobs.round_job(context, PROJECT)
    assert waiting["encoder_version"] is None and waiting["finetune_due"] is False
    filled = jobs.embed_job(context, PROJECT)
    assert (filled["n_embedded"], filled["space_filled"]) == (20, True)
    assert follow_ups(JobKind.EMBED, filled) == [JobKind.ROUND]
    moved = jobs.round_job(context, PROJECT)
    assert moved["encoder_version"] == version and moved["n_embedded"] == 0
    live = store.load_meta(moved["model_version"])
    assert (live["encoder_key"], live["encoder_version"]) == (f"resnet18-random.{version}", version)
    base_z = store.embeddings("resnet18-random").load()
    tuned_z = store.embeddings(f"resnet18-random.{version}").load()
    assert not np.allclose(base_z.z[base_z.rows_of(np.array([3]))], tuned_z.z[tuned_z.rows_of(np.array([3]))])

    # /predict reads the tuned space of the live version: the dark task 3 is predicted dark.
    spec = parse_label_config(CONFIG)
    answer = Predictor(context.settings).predict(PROJECT, moved["model_version"], spec, [{"id": 3}, {"id": 15}])
    assert answer.missing == 0
    assert [r["result"][0]["value"]["choices"] for r in answer.results] == [["dark"], ["light"]]


def test_a_restarted_worker_embeds_with_the_stored_weights(setup: Any) -> None:
    context, fake, store = setup
    label(fake, [1, 2, 11, 12])
    jobs.embed_job(context, PROJECT)
    version = jobs.finetune_job(context, PROJECT)["encoder_version"]
    jobs.embed_job(context, PROJECT)
    cached = store.embeddings(space_key(context.settings, version)).load()

    embedder._tuned = embedder.LRUCache(embedder.TUNED_ENCODERS_KEPT)  # as in a new process
    embedder._loaded.clear()
    runtime = load_tuned_encoder(context.settings, store, version)
    image = embedder.decode_image(7, FakeFetcher().fetch(7, "/data/upload/7.png"), 1 << 20)
    again = runtime.embed([image]).numpy()  # (1, 512)
    assert np.allclose(again, cached.z[cached.rows_of(np.array([7]))], atol=1e-5)


def test_running_out_of_gpu_memory_keeps_the_rounds_going_on_the_head(
    setup: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    context, fake, store = setup

    def out_of_memory(*args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(finetuning, "finetune_encoder", out_of_memory)
    label(fake, [1, 2, 11, 12])
    jobs.embed_job(context, PROJECT)
    with caplog.at_level(logging.WARNING):
        result = jobs.finetune_job(context, PROJECT)
    assert result == {"status": "out_of_memory"} and follow_ups(JobKind.FINETUNE, result) == []
    assert "fine-tuning 1 blocks on 4 labeled tasks ran out of GPU memory (ALFAMIX_GPU_MEMORY_FRACTION=0.5)" in (
        caplog.text
    )
    assert [(m["status"], m["n_labeled_tasks"]) for m in store.encoders()] == [("out_of_memory", 4)]

    record = jobs.round_job(context, PROJECT)  # not asked again before EVERY more labels
    assert record["status"] == "done" and record["encoder_version"] is None and record["finetune_due"] is False
    label(fake, [3, 4, 13, 14])
    assert jobs.round_job(context, PROJECT)["finetune_due"] is True


def test_a_fine_tuning_without_a_readable_image_is_an_attempt_not_a_crash(
    setup: Any, caplog: pytest.LogCaptureFixture
) -> None:
    context, fake, store = setup
    label(fake, [1, 2, 11, 12])
    jobs.embed_job(context, PROJECT)
    context.fetcher = BrokenFetcher({1, 2, 11, 12})
    with caplog.at_level(logging.ERROR):
        result = jobs.finetune_job(context, PROJECT)
    assert result == {"status": "failed", "error": "no images to fine-tune on"}
    assert "project 5: fine-tuning on 4 labeled tasks failed: no images to fine-tune on" in caplog.text
    assert [(m["status"], m["n_labeled_tasks"]) for m in store.encoders()] == [("failed", 4)]
    assert jobs.finetune_job(context, PROJECT) == {"status": "skipped", "reason": "not due"}


def test_old_encoder_versions_go_once_no_kept_version_uses_them(setup: Any) -> None:
    context, fake, store = setup
    versions = []
    for tasks in ([1, 2, 11, 12], [3, 4, 13, 14], [5, 6, 15, 16]):
        label(fake, tasks)
        jobs.embed_job(context, PROJECT)
        versions.append(jobs.finetune_job(context, PROJECT)["encoder_version"])
        jobs.embed_job(context, PROJECT)
        assert jobs.round_job(context, PROJECT)["encoder_version"] == versions[-1]
    # Kept: the live version's encoder and its predecessor's; the first is gone, with its cache.
    assert [m["version"] for m in store.encoders()] == versions[1:]
    spaces = sorted(p.name for p in (store.root / "embeddings").iterdir())
    assert spaces == sorted(["resnet18-random", *(f"resnet18-random.{v}" for v in versions[1:])])


def test_the_space_of_a_tuned_encoder_belongs_to_its_base_encoder() -> None:
    settings = Settings(encoder="resnet18", encoder_weights="IMAGENET1K_V1")
    assert space_key(settings, None) == encoder_key(settings) == "resnet18-IMAGENET1K_V1"
    assert space_key(settings, "ft2-20261202120000") == "resnet18-IMAGENET1K_V1.ft2-20261202120000"
    assert in_encoder_space("resnet18-IMAGENET1K_V1.ft2-20261202120000", settings)
    assert not in_encoder_space("resnet18-random.ft2-20261202120000", settings)
    assert not in_encoder_space("resnet50-IMAGENET1K_V1", settings)
