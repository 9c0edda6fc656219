"""Model outputs to Label Studio predictions: the label sets and the exact wire dicts."""

from __future__ import annotations

import json

import numpy as np

from backend.labelstudio.label_config import ClassificationSpec
from backend.labelstudio.predictions import bulk_predictions, predicted_label_sets

SINGLE = ClassificationSpec("choice", "image", "image", ("Cat", "Dog", "Bird"), multi_label=False)
MULTI = ClassificationSpec("choice", "image", "image", ("Cat", "Dog", "Bird"), multi_label=True)

# Dyadic values, so "within half of the row max" is exact: row maxima 0.5, 0.5, 0.75 -> thresholds 0.25, 0.25, 0.375.
PROBS = np.array([[0.125, 0.5, 0.375], [0.5, 0.25, 0.25], [0.75, 0.125, 0.125]], dtype=np.float32)


def test_single_label_sets_are_the_argmax() -> None:
    assert predicted_label_sets(PROBS, multi_label=False) == [(1,), (0,), (0,)]


def test_multi_label_sets_keep_every_label_at_least_half_the_row_max() -> None:
    assert predicted_label_sets(PROBS, multi_label=True) == [(1, 2), (0, 1, 2), (0,)]


def choices(*labels: str) -> list[dict[str, object]]:
    return [{"from_name": "choice", "to_name": "image", "type": "choices", "value": {"choices": list(labels)}}]


def test_bulk_predictions_are_the_exact_wire_dicts() -> None:
    predictions = bulk_predictions(
        SINGLE,
        task_ids=np.array([11, 12], dtype=np.int64),
        probs=PROBS[[0, 2]],
        score=np.array([0.25, -1.5], dtype=np.float32),
        model_version="v3",
    )

    assert predictions == [
        {"task": 11, "model_version": "v3", "score": 0.25, "result": choices("Dog")},
        {"task": 12, "model_version": "v3", "score": -1.5, "result": choices("Cat")},
    ]
    assert [(type(p["task"]), type(p["score"])) for p in predictions] == [(int, float), (int, float)]
    json.dumps(predictions)  # numpy scalars would not serialise


def test_multi_label_prediction_lists_every_kept_label() -> None:
    predictions = bulk_predictions(MULTI, np.array([11]), PROBS[[0]], np.array([0.5]), model_version="v3")

    assert predictions[0]["result"] == choices("Dog", "Bird")


def test_no_probabilities_give_an_empty_result() -> None:
    predictions = bulk_predictions(SINGLE, np.array([11, 12]), None, np.array([1.0, 2.0]), model_version="v0")

    assert predictions == [
        {"task": 11, "model_version": "v0", "score": 1.0, "result": []},
        {"task": 12, "model_version": "v0", "score": 2.0, "result": []},
    ]
