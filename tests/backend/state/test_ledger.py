"""LabelLedger: webhook payloads in, the task list a round reads out, in files and in Redis alike."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from backend.state.ledger import FileHashes, LabelLedger, LedgerCounts, RedisHashes

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "label_studio_payloads"


def annotation(annotation_id: int, task_id: int, label: str, cancelled: bool = False) -> dict[str, Any]:
    result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]
    return {"id": annotation_id, "task": task_id, "result": result, "was_cancelled": cancelled, "updated_at": "t"}


def task(task_id: int, annotations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"id": task_id, "data": {"image": f"/data/upload/{task_id}.png"}, "annotations": annotations or []}


@pytest.fixture
def redis_hashes(redis_url: str) -> Iterator[RedisHashes]:
    connection = Redis.from_url(redis_url)
    prefix = f"alfamix-test-ledger-{uuid.uuid4().hex[:8]}"
    yield RedisHashes(connection, prefix)
    for key in connection.scan_iter(f"{prefix}:*"):
        connection.delete(key)


@pytest.fixture(params=["files", "redis"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path, redis_hashes: RedisHashes) -> LabelLedger:
    return LabelLedger(FileHashes(tmp_path / "ledger") if request.param == "files" else redis_hashes)


def labels_by_task(ledger: LabelLedger) -> dict[int, list[str]]:
    return {
        t["id"]: sorted(a["result"][0]["value"]["choices"][0] for a in t["annotations"] if not a["was_cancelled"])
        for t in ledger.tasks()
    }


def test_recorded_webhooks_build_the_task_list(ledger: LabelLedger) -> None:
    for name in ("webhook_tasks_created", "webhook_annotation_created", "webhook_annotation_updated"):
        payload = json.loads((FIXTURES / f"{name}.json").read_text())
        ledger.apply_event(payload["action"], payload)
    tasks = {t["id"]: t for t in ledger.tasks()}
    assert sorted(tasks) == [1, 17, 31, 32]  # two created, two carried by the annotation events
    assert tasks[31]["data"] == {"image": "/data/upload/1/d9ef843a-mnist-3448.png"}
    assert labels_by_task(ledger)[17] == ["7"] and labels_by_task(ledger)[1] == ["9"]
    assert ledger.counts() == LedgerCounts(tasks=4, annotations=2)


def test_an_update_replaces_and_a_delete_removes_the_annotation(ledger: LabelLedger) -> None:
    ledger.note_tasks([task(1), task(2)])
    ledger.apply_event("ANNOTATION_CREATED", {"annotation": annotation(10, 1, "cat")})
    ledger.apply_event("ANNOTATION_UPDATED", {"annotation": annotation(10, 1, "dog")})
    ledger.apply_event("ANNOTATION_CREATED", {"annotation": annotation(11, 2, "cat")})
    assert labels_by_task(ledger) == {1: ["dog"], 2: ["cat"]}
    ledger.apply_event("ANNOTATIONS_DELETED", {"annotations": [{"id": 10}]})
    assert labels_by_task(ledger) == {1: [], 2: ["cat"]}
    assert ledger.counts() == LedgerCounts(tasks=2, annotations=1)


def test_deleted_tasks_take_their_annotations_with_them(ledger: LabelLedger) -> None:
    ledger.note_tasks([task(1), task(2), task(3)])
    ledger.note_annotations([annotation(10, 1, "cat"), annotation(11, 2, "dog")])
    ledger.apply_event("TASKS_DELETED", {"tasks": [{"id": 1}, {"id": 3}]})
    assert labels_by_task(ledger) == {2: ["dog"]}


def test_skips_are_kept_but_not_counted_as_annotations(ledger: LabelLedger) -> None:
    ledger.note_tasks([task(1)])
    ledger.note_annotations([annotation(10, 1, "cat", cancelled=True)])
    assert ledger.counts() == LedgerCounts(tasks=1, annotations=0)


def test_a_sync_replaces_what_it_listed_but_keeps_what_webhooks_noted_meanwhile(ledger: LabelLedger) -> None:
    ledger.note_tasks([task(1), task(2)])
    ledger.note_annotations([annotation(10, 1, "cat"), annotation(11, 2, "cat")])  # 11 was deleted unseen
    listing_started = time.time()
    ledger.note_annotations([annotation(12, 2, "dog")])  # arrives while the listing runs
    ledger.replace_annotations([task(1, [annotation(10, 1, "bird")])], listed_since=listing_started)
    assert labels_by_task(ledger) == {1: ["bird"], 2: ["dog"]}
    assert ledger.synced_at("labels") is not None and ledger.synced_at("tasks") is None


def test_a_sync_that_listed_before_a_delete_does_not_bring_it_back(ledger: LabelLedger) -> None:
    ledger.note_tasks([task(1), task(2), task(3)])
    ledger.note_annotations([annotation(10, 1, "cat"), annotation(11, 2, "dog"), annotation(12, 3, "cat")])
    listing_started = time.time()
    # Label Studio listed all three; then an annotator deleted 10 and a task went, before the sync wrote.
    listed = [
        task(1, [annotation(10, 1, "cat")]),
        task(2, [annotation(11, 2, "dog")]),
        task(3, [annotation(12, 3, "cat")]),
    ]
    ledger.apply_event("ANNOTATIONS_DELETED", {"annotations": [{"id": 10}]})
    ledger.apply_event("TASKS_DELETED", {"tasks": [{"id": 3}]})
    ledger.replace_annotations(listed, listed_since=listing_started)
    ledger.replace_tasks(listed, listed_since=listing_started)
    assert labels_by_task(ledger) == {1: [], 2: ["dog"]}
    # A listing that began after the deletion is taken as it is.
    ledger.replace_annotations([task(1, [annotation(13, 1, "bird")])], listed_since=time.time())
    assert labels_by_task(ledger) == {1: ["bird"], 2: []}


def test_tombstones_expire_an_hour_after_their_deletion(ledger: LabelLedger) -> None:
    ledger.note_tasks([task(1), task(2)])
    ledger.apply_event("TASKS_DELETED", {"tasks": [{"id": 1}]})
    ledger.apply_event("TASKS_DELETED", {"tasks": [{"id": 2}]})
    ledger.hashes.put("deleted_tasks", {"1": repr(time.time() - 3601)})
    ledger.replace_tasks([], listed_since=time.time())
    assert sorted(ledger.hashes.read("deleted_tasks")) == ["2"]


def test_a_task_sync_drops_tasks_label_studio_no_longer_has(ledger: LabelLedger) -> None:
    ledger.note_tasks([task(1), task(2), task(3)])
    ledger.replace_tasks([task(2), task(4)], listed_since=time.time())
    assert [t["id"] for t in ledger.tasks()] == [2, 4]
    assert ledger.synced_at("tasks") is not None


def test_file_hashes_survive_a_restart_only_once_saved(tmp_path: Path) -> None:
    first = LabelLedger(FileHashes(tmp_path / "ledger"))
    first.note_tasks([task(1)])
    first.save()
    first.note_tasks([task(2)])  # not saved: the next sync lists it again
    reopened = LabelLedger(FileHashes(tmp_path / "ledger"))
    assert [t["id"] for t in reopened.tasks()] == [1]


def test_malformed_payloads_change_nothing(ledger: LabelLedger) -> None:
    ledger.apply_event("ANNOTATION_CREATED", {"annotation": {"id": "x", "task": 1}})
    ledger.apply_event("TASKS_CREATED", {"tasks": [{"id": True}, "junk", {"data": {}}]})
    ledger.apply_event("ANNOTATIONS_DELETED", {"annotations": "all"})
    assert ledger.tasks() == [] and ledger.counts() == LedgerCounts(tasks=0, annotations=0)


def test_the_task_list_is_read_again_only_after_it_changed(ledger: LabelLedger) -> None:
    ledger.note_tasks([task(1)])
    assert [t["id"] for t in ledger.tasks()] == [1]
    revision = ledger.hashes.revision("tasks")
    # A label changes the annotations, not the task list, though its webhook carries the task.
    ledger.apply_event("ANNOTATION_CREATED", {"annotation": annotation(10, 1, "cat"), "task": task(1)})
    assert ledger.hashes.revision("tasks") == revision and labels_by_task(ledger) == {1: ["cat"]}
    ledger.note_tasks([task(2)])
    assert ledger.hashes.revision("tasks") != revision
    assert [t["id"] for t in ledger.tasks()] == [1, 2]


def test_a_second_process_sees_what_the_first_wrote(redis_hashes: RedisHashes) -> None:
    worker = LabelLedger(RedisHashes(redis_hashes.connection, redis_hashes.prefix))
    web = LabelLedger(redis_hashes)
    web.note_tasks([task(1)])
    assert [t["id"] for t in worker.tasks()] == [1]
    web.apply_event("TASKS_CREATED", {"tasks": [task(2)]})
    assert [t["id"] for t in worker.tasks()] == [1, 2]
