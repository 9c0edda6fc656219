"""How Label Studio 1.23.2 serves "Label All Tasks" under uncertainty sampling, as a pure function.

Read from ``projects/functions/next_task.py`` (``_try_uncertainty_sampling``) and checked
against a real server by ``tests/e2e/test_label_studio_serving.py``:

- only unlabeled tasks with a prediction of the project's live model version are ranked;
- first key: how many tasks this annotator has solved whose ``Max(predictions__cluster)``
  (over every stored prediction of the task, any version) equals the task's cluster, where
  None matches None; fewest first. Second key: the prediction's score, lowest first;
- the first task not locked by another annotator is served. Label Studio's random pick for
  teams applies only when ``project.annotators()`` has more than one user, and in the open
  source server that list is always empty (no code path adds a project member);
- with no task carrying a live prediction, a random unlocked task is served.

Ties in both keys fall to the database: SQLite serves the lower task id first, PostgreSQL no
fixed one; the model takes the task id. The backend's scores are distinct ranks and never tie.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LivePrediction:
    score: float
    cluster: int | None


def serving_order(
    live: Mapping[int, LivePrediction],
    solved_by_user: Iterable[int],
    stored_clusters: Mapping[int, Sequence[int | None]],
    unlabeled: Iterable[int],
) -> list[int]:
    """Unlabeled tasks with a live prediction, in the order Label Studio ranks them for one user.

    ``stored_clusters`` maps a task to the clusters of all its stored predictions (any version).
    """
    solved = Counter(_max_cluster(stored_clusters.get(task, ())) for task in solved_by_user)
    ranked = [task for task in unlabeled if task in live]
    return sorted(ranked, key=lambda task: (solved[live[task].cluster], live[task].score, task))


def next_task(
    live: Mapping[int, LivePrediction],
    solved_by_user: Iterable[int],
    stored_clusters: Mapping[int, Sequence[int | None]],
    unlabeled: Sequence[int],
    locked_by_others: set[int],
    rng: np.random.Generator,
) -> int | None:
    """The task Label Studio serves next, or None when every unlabeled task is locked."""
    for task in serving_order(live, solved_by_user, stored_clusters, unlabeled):
        if task not in locked_by_others:
            return task
    if any(task in live for task in unlabeled):
        return None  # every ranked task is locked: Label Studio serves nothing from this queue
    free = [task for task in unlabeled if task not in locked_by_others]
    return int(rng.choice(free)) if free else None


def _max_cluster(clusters: Sequence[int | None]) -> int | None:
    """SQL's Max over the clusters: NULLs are ignored, all NULL (or none) gives NULL."""
    present = [cluster for cluster in clusters if cluster is not None]
    return max(present) if present else None
