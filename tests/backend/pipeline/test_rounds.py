"""run_round with a small in-memory Label Studio: what it pushes, in which order, and what it refuses."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from backend.errors import LabelStudioError, MediaError
from backend.jobs.registry import JobKind, follow_ups
from backend.labelstudio import ledger_sync
from backend.pipeline import jobs, rounds
from backend.pipeline.context import Context
from backend.settings import Settings
from backend.state.files import FileProjectStore

CONFIG = (
    '<View><Image name="image" value="$image"/><Choices name="label" toName="image">'
    '<Choice value="dark"/><Choice value="light"/></Choices></View>'
)


def png(level: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (32, 32), color=level).save(buffer, format="PNG")
    return buffer.getvalue()


class FakeLabelStudio:
    """Records calls in order; tasks 1-10 are dark images, 11-20 light ones."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.labels: dict[int, str] = {}
        # Predictions of an older version of this backend, and another model's.
        self.stored = [{"id": 900 + t, "task": t, "model_version": "alfamix-0-20250101000000"} for t in range(1, 6)]
        self.stored += [{"id": 950 + t, "task": t, "model_version": "someone-elses-model"} for t in range(1, 4)]
        self.drop_one = False

    def get_project(self, project_id: int) -> dict[str, Any]:
        counts = {"task_number": 20, "total_annotations_number": len(self.labels)}
        return {"id": project_id, "label_config": CONFIG, **counts}

    def task(self, task_id: int) -> dict[str, Any]:
        data = {"image": f"/data/upload/{task_id}.png"}
        return {"id": task_id, "data": data, "annotations": self.annotations(task_id)}

    def annotations(self, task_id: int) -> list[dict[str, Any]]:
        if task_id not in self.labels:
            return []
        result = [{"from_name": "label", "type": "choices", "value": {"choices": [self.labels[task_id]]}}]
        return [{"id": task_id, "result": result, "was_cancelled": False, "updated_at": "2026-01-01T00:00:00Z"}]

    def iter_tasks(self, project_id: int, with_annotations: bool = True) -> list[dict[str, Any]]:
        self.calls.append(("list tasks", with_annotations))
        return [self.task(t) for t in range(1, 21)]

    def iter_labeled_tasks(self, project_id: int) -> list[dict[str, Any]]:
        self.calls.append(("list labeled", None))
        return [self.task(t) for t in sorted(self.labels)]

    def import_predictions(self, project_id: int, predictions: list[dict[str, Any]]) -> int:
        self.calls.append(("import", predictions))
        stored = predictions[: len(predictions) - int(self.drop_one)]
        self.stored += [{"id": 2000 + len(self.stored) + i, **p} for i, p in enumerate(stored)]
        return len(stored)

    def serve_model_version(self, project_id: int, model_version: str) -> None:
        self.calls.append(("serve", model_version))

    def predictions(self, project_id: int) -> list[dict[str, Any]]:
        return list(self.stored)

    def delete_prediction(self, prediction_id: int) -> None:
        self.calls.append(("delete", prediction_id))
        self.stored = [p for p in self.stored if p["id"] != prediction_id]

    def versions(self) -> set[str]:
        return {p["model_version"] for p in self.stored}

    def writes(self) -> list[str]:
        return [kind for kind, _ in self.calls if not kind.startswith("list")]


class FakeFetcher:
    def fetch(self, task_id: int, uri: str) -> bytes:
        return png(30 if task_id <= 10 else 220)


class BrokenFetcher(FakeFetcher):
    def __init__(self, broken: set[int]) -> None:
        self.broken = broken

    def fetch(self, task_id: int, uri: str) -> bytes:
        if task_id in self.broken:
            raise MediaError(f"task {task_id}: {uri} answered HTTP 404")
        return super().fetch(task_id, uri)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Context, FakeLabelStudio]:
    settings = Settings(
        model_dir=tmp_path, encoder="resnet18", encoder_weights=None, device="cpu", n_query=4, write_pause=0.0
    )
    fake = FakeLabelStudio()
    return Context(settings, fake, FakeFetcher()), fake  # type: ignore[arg-type]


def embedded_round(context: Context, fake: FakeLabelStudio) -> dict[str, Any]:
    """As in the service: the embed job (started on connect) has embedded the pool before the round."""
    jobs.embed_job(context, 5)
    fake.calls.clear()
    return jobs.round_job(context, 5)


def test_round_pushes_the_queue_front_then_switches_then_prunes_old_predictions(setup: Any) -> None:
    context, fake = setup
    context.settings = replace(context.settings, queue_head=6)
    fake.labels = {1: "dark", 2: "dark", 11: "light", 12: "light"}
    record = embedded_round(context, fake)
    assert follow_ups(JobKind.ROUND, record) == ["prune"]
    pruned = jobs.prune_job(context, 5)

    assert fake.writes() == ["import", "serve"] + ["delete"] * 5
    assert [kind for kind, _ in fake.calls if kind.startswith("list")] == []  # the ledger knew everything
    pushed = fake.calls[0][1]
    queue = FileProjectStore(context.settings.model_dir, 5).load_queue(record["model_version"])
    front = queue["task_ids"][np.argsort(queue["score"], kind="stable")[:6]]
    assert sorted(p["task"] for p in pushed) == sorted(front.tolist())
    assert len(queue["task_ids"]) == 16  # every unlabeled task is ranked, for /predict
    assert {p["model_version"] for p in pushed} == {record["model_version"]}
    # A linear head on two well-separated groups predicts each group's class.
    predicted = {p["task"]: p["result"][0]["value"]["choices"] for p in pushed}
    assert all(predicted[t] == (["dark"] if t <= 10 else ["light"]) for t in predicted)
    assert sorted(p["score"] for p in pushed)[0] == 0.0
    assert fake.calls[1] == ("serve", record["model_version"])
    # Only this backend's older predictions go, one request each; another model's stay.
    assert [arg for kind, arg in fake.calls if kind == "delete"] == [901, 902, 903, 904, 905]
    assert fake.versions() == {"someone-elses-model", record["model_version"]}
    assert FileProjectStore(context.settings.model_dir, 5).live()["model_version"] == record["model_version"]
    assert record["n_labeled_tasks"] == 4 and record["n_predictions"] == 6 and record["device"] == "cpu"
    assert (pruned["n_deleted"], pruned["n_left"], pruned["more"]) == (5, 0, False)
    assert record["n_embedded"] == 0 and record["n_unembedded"] == 0


def test_labels_from_webhooks_reach_the_next_round_without_listing_tasks(setup: Any) -> None:
    context, fake = setup
    fake.labels = {1: "dark", 11: "light"}
    first = embedded_round(context, fake)
    fake.labels |= {2: "dark", 3: "light", 13: "light"}  # the model said dark, dark, light: 2 of 3 right
    for task_id in (2, 3, 13):
        payload = {"annotation": {**fake.annotations(task_id)[0], "task": task_id}, "task": fake.task(task_id)}
        context.ledger(5).apply_event("ANNOTATION_CREATED", payload)
    fake.calls.clear()
    second = jobs.round_job(context, 5)
    jobs.prune_job(context, 5)
    assert [kind for kind, _ in fake.calls if kind.startswith("list")] == []
    assert second["n_labeled_tasks"] == 5 and second["n_embedded"] == 0
    assert second["n_prelabeled"] == 3
    assert second["prelabel_accuracy"] == pytest.approx(2 / 3)
    # The previous version is kept for rollback, the one before is deleted.
    assert first["model_version"] in fake.versions() and second["model_version"] in fake.versions()


def test_a_missed_webhook_is_caught_by_the_annotation_count(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_sync, "LABELS_RETRY_SECONDS", 0.0)
    context, fake = setup
    fake.labels = {1: "dark", 11: "light"}
    embedded_round(context, fake)
    fake.labels[2] = "dark"  # labeled in Label Studio, but its webhook never arrived
    fake.calls.clear()
    record = jobs.round_job(context, 5)
    assert [kind for kind, _ in fake.calls if kind.startswith("list")] == ["list labeled"]
    assert record["n_labeled_tasks"] == 3 and record["labeled_listed"] == 3 and record["tasks_listed"] is None


def test_the_project_keeps_its_version_when_label_studio_stores_fewer_predictions(setup: Any) -> None:
    context, fake = setup
    fake.labels = {1: "dark", 11: "light"}
    fake.drop_one = True
    with pytest.raises(LabelStudioError, match="Label Studio stored 17 of 18 predictions"):
        embedded_round(context, fake)
    assert fake.writes() == ["import"]
    assert FileProjectStore(context.settings.model_dir, 5).live() is None


def test_a_fully_labeled_project_keeps_its_queue(setup: Any) -> None:
    context, fake = setup
    fake.labels = {t: "dark" if t <= 10 else "light" for t in range(1, 21)}
    record = embedded_round(context, fake)
    assert record["n_unlabeled_tasks"] == 0 and record["model_version"] is None
    assert fake.writes() == [] and follow_ups(JobKind.ROUND, record) == []


def test_a_round_before_any_label_orders_by_diversity_with_empty_results(setup: Any) -> None:
    context, fake = setup
    record = embedded_round(context, fake)
    pushed = fake.calls[0][1]
    assert len(pushed) == 20 and all(p["result"] == [] for p in pushed)
    assert sorted(p["score"] for p in pushed) == pytest.approx(np.linspace(0, 1, 20).tolist())
    assert record["n_labeled_tasks"] == 0


def test_the_embed_job_takes_a_limited_number_of_tasks_and_asks_for_more(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "EMBED_JOB_TASKS", 8)
    monkeypatch.setattr(rounds, "ROUND_EMBED_TASKS", 0)
    context, _ = setup
    first = jobs.embed_job(context, 5)
    # The project has no queue yet: its first embedded tasks ask for the cold-start round.
    assert (first["n_embedded"], first["n_left"], follow_ups(JobKind.EMBED, first)) == (8, 12, ["round", "embed"])
    jobs.round_job(context, 5)
    second, third = jobs.embed_job(context, 5), jobs.embed_job(context, 5)
    assert (second["n_left"], third["n_embedded"], follow_ups(JobKind.EMBED, third)) == (4, 4, [])


def test_a_round_embeds_its_labeled_tasks_and_a_bounded_slice_of_the_rest(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rounds, "ROUND_EMBED_TASKS", 3)
    context, fake = setup
    fake.labels = {1: "dark", 11: "light"}
    record = jobs.round_job(context, 5)  # no embed job ran before
    assert record["n_embedded"] == 5 and record["n_unlabeled_tasks"] == 3 and record["n_unembedded"] == 15
    assert follow_ups(JobKind.ROUND, record) == ["prune", "embed"]


def test_images_that_fail_are_reported_by_rounds_and_not_asked_for_again(setup: Any) -> None:
    context, fake = setup
    context.fetcher = BrokenFetcher({7, 17})
    fake.labels = {1: "dark", 11: "light"}
    record = embedded_round(context, fake)
    assert set(record["skipped_tasks"]) == {"7", "17"} and "HTTP 404" in record["skipped_tasks"]["7"]
    assert record["n_unembedded"] == 0 and record["n_unlabeled_tasks"] == 16
    assert follow_ups(JobKind.ROUND, record) == ["prune"]


def test_pruning_stops_at_its_time_budget_and_asks_for_more(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rounds, "PRUNE_SECONDS", 0.0)
    context, fake = setup
    result = jobs.prune_job(context, 5)  # the store keeps no version: all 5 old ones are stale
    assert (result["n_deleted"], result["n_left"]) == (1, 4) and follow_ups(JobKind.PRUNE, result) == ["prune"]
    assert fake.versions() == {"alfamix-0-20250101000000", "someone-elses-model"}


def test_the_batch_keeps_its_place_at_the_head_across_rounds(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_sync, "LABELS_RETRY_SECONDS", 0.0)  # no webhook here: the sync finds the label
    context, fake = setup
    context.settings = replace(context.settings, queue_head=20)
    fake.labels = {1: "dark", 11: "light"}
    first = embedded_round(context, fake)
    batch = FileProjectStore(context.settings.model_dir, 5).load_meta(first["model_version"])["batch"]  # type: ignore[index]
    fake.labels[batch["task_ids"][0]] = "dark" if batch["task_ids"][0] <= 10 else "light"  # the first is labeled
    second = jobs.round_job(context, 5)
    imports = [payload for kind, payload in fake.calls if kind == "import"]
    pushed = sorted(imports[-1], key=lambda p: p["score"])

    assert (first["batch_event"], first["n_batch"], second["batch_event"]) == ("new", 4, "kept")
    assert second["batch_kind"] == first["batch_kind"] and second["n_batch"] == 3
    assert [p["task"] for p in pushed[:3]] == batch["task_ids"][1:]


def test_the_strategy_setting_orders_the_queue_and_is_recorded(setup: Any) -> None:
    context, fake = setup
    context.settings = replace(context.settings, strategy="margin")
    fake.labels = {1: "dark", 11: "light"}
    record = embedded_round(context, fake)
    meta = FileProjectStore(context.settings.model_dir, 5).load_meta(record["model_version"])

    assert (record["strategy"], record["batch_kind"], record["batch_event"]) == ("margin", "margin", "requeried")
    assert meta is not None and meta["strategy"] == "margin"


def test_labeled_audit_tasks_judge_the_version_that_pre_labeled_them(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_sync, "LABELS_RETRY_SECONDS", 0.0)  # no webhook here: the sync finds the label
    context, fake = setup
    context.settings = replace(context.settings, audit_fraction=0.5)  # 2 of a batch of 4
    fake.labels = {1: "dark", 2: "dark", 11: "light", 12: "light"}
    first = embedded_round(context, fake)
    store = FileProjectStore(context.settings.model_dir, 5)
    audit = store.load_meta(first["model_version"])["batch"]["audit_task_ids"]  # type: ignore[index]
    queue = store.load_queue(first["model_version"])
    assert queue is not None and len(audit) == 2
    predicted = dict(zip(queue["task_ids"].tolist(), queue["predicted"].tolist(), strict=True))
    truth = {task: "dark" if task <= 10 else "light" for task in audit}
    fake.labels.update(truth)
    second = jobs.round_job(context, 5)

    expected_hits = sum(["dark", "light"][predicted[task]] == truth[task] for task in audit)
    assert (second["n_audited"], second["audit_hits"]) == (2, expected_hits)
    assert second["n_prelabeled"] == 2  # the audit tasks are the only labels since the first round


def test_a_change_of_strategy_carries_no_batch(setup: Any) -> None:
    context, fake = setup
    context.settings = replace(context.settings, strategy="random")
    fake.labels = {1: "dark", 11: "light"}
    embedded_round(context, fake)
    context.settings = replace(context.settings, strategy="alfamix")
    record = jobs.round_job(context, 5)

    # Nothing flips on two uniform groups of images: the new batch is a diversity one, not the random batch.
    assert (record["strategy"], record["batch_kind"], record["batch_event"]) == ("alfamix", "diversity", "new")
