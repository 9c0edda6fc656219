"""The ledger's syncs against a real Label Studio, on SQLite and on PostgreSQL: what the counters
and the two listings return, and that a sync repairs changes no webhook reported."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from backend.errors import LabelStudioError
from backend.labelstudio.client import LabelStudioClient
from backend.labelstudio.ledger_sync import sync_ledger
from backend.state.ledger import FileHashes, LabelLedger, LedgerCounts
from devtools.label_studio import LabelStudioServer
from devtools.project import choice_result, placeholder_project

N_TASKS = 12


@pytest.fixture(params=["label_studio", "label_studio_postgres"])
def server(request: pytest.FixtureRequest) -> LabelStudioServer:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def labels_of(ledger: LabelLedger) -> dict[int, list[str]]:
    return {
        t["id"]: [a["result"][0]["value"]["choices"][0] for a in t["annotations"] if not a["was_cancelled"]]
        for t in ledger.tasks()
        if t["annotations"]
    }


def test_a_sync_lists_labeled_tasks_only_and_repairs_what_no_webhook_reported(
    server: LabelStudioServer, tmp_path: Path
) -> None:
    project, created = placeholder_project(server, f"ledger sync {server.database}", N_TASKS)
    first, second, third, skipped = created[:4]
    annotations: dict[int, Any] = {}
    for task_id, label in ((first, "1"), (second, "2"), (third, "3")):
        annotations[task_id] = project.api(
            "POST", f"/api/tasks/{task_id}/annotations/", json={"result": choice_result([label])}
        )
    project.api("POST", f"/api/tasks/{skipped}/annotations/", json={"result": [], "was_cancelled": True})

    client = LabelStudioClient(server.url, server.api_key)
    labeled = list(client.iter_labeled_tasks(project.project_id))
    assert sorted(t["id"] for t in labeled) == sorted([first, second, third])  # the skip has no label
    answer = client.get_project(project.project_id)
    assert (answer["task_number"], answer["total_annotations_number"]) == (N_TASKS, 3)

    ledger = LabelLedger(FileHashes(tmp_path / "ledger"))
    report = sync_ledger(client, answer, ledger, every=300.0)
    assert (report.tasks_listed, report.labeled_listed) == (N_TASKS, 3)
    assert ledger.counts() == LedgerCounts(tasks=N_TASKS, annotations=3)
    assert labels_of(ledger) == {first: ["1"], second: ["2"], third: ["3"]}
    assert ledger.tasks()[0]["data"] == {"image": "http://127.0.0.1:9/img/0.png"}

    # Counts that agree: nothing is listed.
    quiet = sync_ledger(client, client.get_project(project.project_id), ledger, every=300.0)
    assert (quiet.tasks_listed, quiet.labeled_listed) == (None, None)

    # Changes no webhook reported (an annotation deleted, one relabeled): a periodic sync sees them.
    project.api("DELETE", f"/api/annotations/{annotations[first]['id']}/")
    project.api("PATCH", f"/api/annotations/{annotations[second]['id']}/", json={"result": choice_result(["7"])})
    repaired = sync_ledger(client, client.get_project(project.project_id), ledger, every=0.0)
    assert repaired.labeled_listed == 2
    assert labels_of(ledger) == {second: ["7"], third: ["3"]}
    assert ledger.counts() == LedgerCounts(tasks=N_TASKS, annotations=2)


def test_a_listing_made_before_a_deletion_does_not_bring_the_deleted_label_back(
    server: LabelStudioServer, tmp_path: Path
) -> None:
    project, created = placeholder_project(server, f"ledger deletion race {server.database}", 4)
    ids = {}
    for task_id, label in zip(created[:2], ("1", "2"), strict=True):
        annotation = project.api("POST", f"/api/tasks/{task_id}/annotations/", json={"result": choice_result([label])})
        ids[task_id] = annotation["id"]
    client = LabelStudioClient(server.url, server.api_key)
    ledger = LabelLedger(FileHashes(tmp_path / "ledger"))
    sync_ledger(client, client.get_project(project.project_id), ledger, every=300.0)
    assert labels_of(ledger) == {created[0]: ["1"], created[1]: ["2"]}

    # A job's sync lists the labeled tasks; an annotator deletes a label and its webhook
    # (the recorded ANNOTATIONS_DELETED shape) arrives; only then does the sync write.
    listing_started = time.time()
    listed = list(client.iter_labeled_tasks(project.project_id))
    project.api("DELETE", f"/api/annotations/{ids[created[0]]}/")
    ledger.apply_event("ANNOTATIONS_DELETED", {"annotations": [{"id": ids[created[0]]}]})
    ledger.replace_annotations(listed, listed_since=listing_started)
    assert labels_of(ledger) == {created[1]: ["2"]}

    # The next sync agrees with Label Studio's counters: nothing to list, nothing to repair.
    later = sync_ledger(client, client.get_project(project.project_id), ledger, every=300.0)
    assert later.labeled_listed is None and ledger.counts() == LedgerCounts(tasks=4, annotations=1)


def test_a_rotated_token_fails_with_the_hint_and_without_the_token(label_studio: LabelStudioServer) -> None:
    stale_token = "0123456789abcdef0123456789abcdef01234567"  # the shape of a token, not one the server knows
    client = LabelStudioClient(label_studio.url, stale_token)

    with pytest.raises(LabelStudioError) as raised:
        client.get_project(1)

    message = str(raised.value)
    assert "answered HTTP 401: Label Studio refused LABEL_STUDIO_API_KEY" in message
    assert "only on its first start" in message and stale_token not in message
