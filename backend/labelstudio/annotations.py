"""Turn Label Studio tasks into plain records: which tasks exist, which carry which labels."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from backend.labelstudio.label_config import ClassificationSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskRecord:
    task_id: int
    image_url: str | None  # None when task.data lacks the image key
    labels: tuple[int, ...]  # class indices of the latest non-cancelled annotation; () = unlabeled


@dataclass(frozen=True)
class ProjectSnapshot:
    """All tasks of a project at one moment, split into labeled and unlabeled."""

    tasks: tuple[TaskRecord, ...]
    rejected: tuple[tuple[int, str], ...]  # (task_id, why) for annotations that could not be used

    @property
    def labeled(self) -> list[TaskRecord]:
        return [task for task in self.tasks if task.labels]

    @property
    def unlabeled(self) -> list[TaskRecord]:
        return [task for task in self.tasks if not task.labels]


def snapshot_tasks(project_id: int, tasks: Iterable[Mapping[str, Any]], spec: ClassificationSpec) -> ProjectSnapshot:
    """Read each task's image URL and the labels of its latest non-cancelled annotation.

    Skipped (cancelled) annotations are not labels. An annotation naming a label the
    config does not have is rejected with a log line naming the task; the task then
    counts as unlabeled, so it still gets a prediction.
    """
    records: list[TaskRecord] = []
    rejected: list[tuple[int, str]] = []
    for task in tasks:
        task_id = int(task["id"])
        data = task.get("data") or {}
        url = data.get(spec.data_key)
        annotation = latest_annotation(task.get("annotations") or [])
        labels: tuple[int, ...] = ()
        if annotation is not None:
            labels, problem = _labels_of(annotation, spec)
            if problem:
                rejected.append((task_id, problem))
                logger.warning(
                    "project %s task %s: annotation %s ignored: %s", project_id, task_id, annotation.get("id"), problem
                )
        records.append(TaskRecord(task_id, url if isinstance(url, str) and url else None, labels))
    return ProjectSnapshot(tuple(records), tuple(rejected))


def latest_annotation(annotations: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The most recently updated annotation that was not cancelled (skipped), or None."""
    kept = [a for a in annotations if not a.get("was_cancelled")]
    if not kept:
        return None
    return max(kept, key=lambda a: (_timestamp(a.get("updated_at") or a.get("created_at")), int(a.get("id") or 0)))


def _timestamp(value: Any) -> datetime:
    """Compare times, not strings: the API omits a zero fraction of a second ("...:00Z" vs "...:00.5Z")."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _labels_of(annotation: Mapping[str, Any], spec: ClassificationSpec) -> tuple[tuple[int, ...], str | None]:
    """Class indices chosen in one annotation, or () with the reason it cannot be used."""
    chosen: list[str] = []
    for region in annotation.get("result") or []:
        if not isinstance(region, Mapping) or region.get("from_name") != spec.from_name:
            continue
        values = (region.get("value") or {}).get("choices")
        if isinstance(values, list):
            chosen.extend(str(value) for value in values)
    if not chosen:
        return (), None  # e.g. a submit with nothing chosen: not a label, not an error
    unknown = sorted({label for label in chosen if spec.label_index(label) is None})
    if unknown:
        return (), f"labels {unknown} are not in the label config"
    indices = tuple(sorted({spec.labels.index(label) for label in chosen}))
    if len(indices) > 1 and not spec.multi_label:
        return (), f"{len(indices)} labels chosen but the config is single-choice"
    return indices, None
