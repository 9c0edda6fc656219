"""Turn the model's outputs into Label Studio predictions (the only place that writes their format)."""

from __future__ import annotations

from typing import Any

import numpy as np

from backend.labelstudio.label_config import ClassificationSpec

# Multi-label heads are trained on one row per (task, label), so a task's labels share
# the softmax mass; every label within this factor of the top one is predicted.
MULTI_LABEL_RELATIVE_THRESHOLD = 0.5
UNRANKED_SCORE = 1.0  # a task the last round did not rank goes to the end of the queue
UNTRAINED_VERSION = "alfamix-untrained"  # what /setup and /predict report before the first round


def predicted_label_sets(probs: np.ndarray, multi_label: bool) -> list[tuple[int, ...]]:
    """Class indices to pre-select per row of (N, C) probabilities."""
    if not multi_label:
        return [(int(c),) for c in probs.argmax(axis=1)]
    keep = probs >= MULTI_LABEL_RELATIVE_THRESHOLD * probs.max(axis=1, keepdims=True)  # (N, C)
    return [tuple(int(c) for c in np.flatnonzero(row)) for row in keep]


def choices_result(spec: ClassificationSpec, label_indices: tuple[int, ...]) -> list[dict[str, Any]]:
    if not label_indices:
        return []
    return [
        {
            "from_name": spec.from_name,
            "to_name": spec.to_name,
            "type": "choices",
            "value": {"choices": [spec.labels[i] for i in label_indices]},
        }
    ]


def bulk_predictions(
    spec: ClassificationSpec,
    task_ids: np.ndarray,  # (N,)
    probs: np.ndarray | None,  # (N, C), None before any label (no head yet)
    score: np.ndarray,  # (N,) lower = label sooner
    model_version: str,
) -> list[dict[str, Any]]:
    """One prediction per task for POST /api/projects/{id}/import/predictions.

    No ``cluster``: the import stores None whatever it is sent, and with None everywhere Label
    Studio's uncertainty sampling serves by score alone (docs/label_studio_notes.md)."""
    label_sets = predicted_label_sets(probs, spec.multi_label) if probs is not None else [()] * len(task_ids)
    return [
        {
            "task": int(task_id),
            "model_version": model_version,
            "score": float(score[i]),
            "result": choices_result(spec, label_sets[i]),
        }
        for i, task_id in enumerate(task_ids)
    ]


def empty_prediction(model_version: str) -> dict[str, Any]:
    """No pre-selected class, at the end of the queue."""
    return {"result": [], "score": UNRANKED_SCORE, "model_version": model_version}
