"""run_round with a small in-memory Label Studio: what it pushes, in which order, and what it refuses."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from backend.context import Context
from backend.errors import LabelStudioError
from backend.rounds import run_round
from backend.settings import Settings
from backend.store import ProjectStore

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
        self.versions: dict[str, int] = {"alfamix-0-20250101000000": 5, "someone-elses-model": 3}
        self.drop_one = False

    def get_project(self, project_id: int) -> dict[str, Any]:
        return {"id": project_id, "label_config": CONFIG}

    def iter_tasks(self, project_id: int) -> list[dict[str, Any]]:
        def annotations(task_id: int) -> list[dict[str, Any]]:
            if task_id not in self.labels:
                return []
            result = [{"from_name": "label", "type": "choices", "value": {"choices": [self.labels[task_id]]}}]
            return [{"id": task_id, "result": result, "was_cancelled": False, "updated_at": "2026-01-01T00:00:00Z"}]

        return [
            {"id": t, "data": {"image": f"/data/upload/{t}.png"}, "annotations": annotations(t)} for t in range(1, 21)
        ]

    def import_predictions(self, project_id: int, predictions: list[dict[str, Any]]) -> int:
        self.calls.append(("import", predictions))
        stored = len(predictions) - int(self.drop_one)
        if predictions:
            self.versions[predictions[0]["model_version"]] = stored
        return stored

    def serve_model_version(self, project_id: int, model_version: str) -> None:
        self.calls.append(("serve", model_version))

    def model_versions(self, project_id: int) -> dict[str, int]:
        return dict(self.versions)

    def delete_predictions(self, project_id: int, model_version: str) -> None:
        self.calls.append(("delete", model_version))
        del self.versions[model_version]


class FakeFetcher:
    def fetch(self, task_id: int, uri: str) -> bytes:
        return png(30 if task_id <= 10 else 220)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Context, FakeLabelStudio]:
    settings = Settings(model_dir=tmp_path, encoder="resnet18", encoder_weights=None, device="cpu", n_query=4)
    fake = FakeLabelStudio()
    return Context(settings, fake, FakeFetcher()), fake  # type: ignore[arg-type]


def test_round_pushes_every_unlabeled_task_then_switches_then_prunes_old_versions(setup: Any) -> None:
    context, fake = setup
    fake.labels = {1: "dark", 2: "dark", 11: "light", 12: "light"}
    record = run_round(context, 5)

    kinds = [kind for kind, _ in fake.calls]
    assert kinds == ["import", "serve", "delete"]
    pushed = fake.calls[0][1]
    assert sorted(p["task"] for p in pushed) == [t for t in range(1, 21) if t not in fake.labels]
    assert {p["model_version"] for p in pushed} == {record["model_version"]}
    # A linear head on two well-separated groups predicts each group's class.
    predicted = {p["task"]: p["result"][0]["value"]["choices"] for p in pushed}
    assert all(predicted[t] == (["dark"] if t <= 10 else ["light"]) for t in predicted)
    assert sorted(p["score"] for p in pushed)[0] == 0.0
    assert fake.calls[1] == ("serve", record["model_version"])
    # Only this backend's older versions go; another model's predictions stay.
    assert fake.calls[2] == ("delete", "alfamix-0-20250101000000")
    assert "someone-elses-model" in fake.versions
    assert ProjectStore(context.settings.model_dir, 5).live()["model_version"] == record["model_version"]
    assert record["n_labeled_tasks"] == 4 and record["n_predictions"] == 16 and record["n_embedded"] == 20


def test_a_second_round_embeds_nothing_and_reports_pre_label_accuracy(setup: Any) -> None:
    context, fake = setup
    fake.labels = {1: "dark", 11: "light"}
    first = run_round(context, 5)
    fake.labels |= {2: "dark", 3: "light", 13: "light"}  # the model said dark, dark, light: 2 of 3 right
    second = run_round(context, 5)
    assert second["n_embedded"] == 0
    assert second["n_prelabeled"] == 3
    assert second["prelabel_accuracy"] == pytest.approx(2 / 3)
    # The previous version is kept for rollback, the one before is deleted.
    assert first["model_version"] in fake.versions and second["model_version"] in fake.versions


def test_the_project_keeps_its_version_when_label_studio_stores_fewer_predictions(setup: Any) -> None:
    context, fake = setup
    fake.labels = {1: "dark", 11: "light"}
    fake.drop_one = True
    with pytest.raises(LabelStudioError, match="Label Studio stored 17 of 18 predictions"):
        run_round(context, 5)
    assert [kind for kind, _ in fake.calls] == ["import"]
    assert ProjectStore(context.settings.model_dir, 5).live() is None


def test_a_fully_labeled_project_keeps_its_queue(setup: Any) -> None:
    context, fake = setup
    fake.labels = {t: "dark" if t <= 10 else "light" for t in range(1, 21)}
    record = run_round(context, 5)
    assert record["n_unlabeled_tasks"] == 0 and record["model_version"] is None
    assert fake.calls == []


def test_a_round_before_any_label_orders_by_diversity_with_empty_results(setup: Any) -> None:
    context, fake = setup
    record = run_round(context, 5)
    pushed = fake.calls[0][1]
    assert len(pushed) == 20 and all(p["result"] == [] for p in pushed)
    assert sorted(p["score"] for p in pushed) == pytest.approx(np.linspace(0, 1, 20).tolist())
    assert record["n_labeled_tasks"] == 0
