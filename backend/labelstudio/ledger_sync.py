"""Keep the label ledger true to Label Studio, at a cost that follows what changed.

Every job compares the ledger with the counters Label Studio sends with the project
(``GET /api/projects/{id}``: ``task_number`` and ``total_annotations_number``, one request
whatever the project's size) and lists only what disagrees:

- annotations: ``GET /api/tasks?fields=all`` filtered to tasks with an annotation, so it
  costs what is labeled, not the project. Run when the annotation count differs (at most
  every LABELS_RETRY_SECONDS) and every ``every`` seconds, which catches a missed update;
- tasks: ``GET /api/tasks?fields=task_only`` (id and data, no annotations or predictions),
  which costs the whole project. Run when the ledger never listed them, and when the task
  count differs, at most every ``every`` seconds (webhooks add tasks as they are imported).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from backend.labelstudio.client import LabelStudioClient
from backend.state.ledger import LABELS, TASKS, LabelLedger

logger = logging.getLogger(__name__)

LABELS_RETRY_SECONDS = 10.0


@dataclass(frozen=True)
class SyncReport:
    tasks_listed: int | None  # tasks read from Label Studio, None when the task list was not read
    labeled_listed: int | None  # labeled tasks read, None when annotations were not read


def sync_ledger(client: LabelStudioClient, project: Mapping[str, Any], ledger: LabelLedger, every: float) -> SyncReport:
    """List from Label Studio what the ledger may have missed; ``project`` is its GET answer."""
    project_id = int(project["id"])
    now = time.time()
    counts = ledger.counts()
    tasks_listed = labeled_listed = None

    tasks_synced = ledger.synced_at(TASKS)
    tasks_differ = counts.tasks != project.get("task_number", counts.tasks)
    if tasks_synced is None or (tasks_differ and now - tasks_synced >= every):
        started = time.time()
        tasks = list(client.iter_tasks(project_id, with_annotations=False))
        ledger.replace_tasks(tasks, listed_since=started)
        tasks_listed = len(tasks)
        logger.info("project %s: listed %d tasks in %.1f s", project_id, len(tasks), time.time() - started)

    labels_synced = ledger.synced_at(LABELS)
    since_labels = now - labels_synced if labels_synced is not None else float("inf")
    labels_differ = counts.annotations != project.get("total_annotations_number", counts.annotations)
    if since_labels >= every or (labels_differ and since_labels >= LABELS_RETRY_SECONDS):
        started = time.time()
        labeled = list(client.iter_labeled_tasks(project_id))
        ledger.replace_annotations(labeled, listed_since=started)
        labeled_listed = len(labeled)
        logger.info("project %s: listed %d labeled tasks in %.1f s", project_id, len(labeled), time.time() - started)
    ledger.save()
    return SyncReport(tasks_listed, labeled_listed)
