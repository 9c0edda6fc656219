"""Tasks to records: the latest non-cancelled annotation gives the labels; unusable ones are rejected."""

from __future__ import annotations

from typing import Any

from backend.labelstudio.annotations import TaskRecord, latest_annotation, snapshot_tasks
from backend.labelstudio.label_config import ClassificationSpec

SINGLE = ClassificationSpec("choice", "image", "image", ("Cat", "Dog", "Bird"), multi_label=False)
MULTI = ClassificationSpec("choice", "image", "image", ("Cat", "Dog", "Bird"), multi_label=True)


def annotation(
    annotation_id: int, updated_at: str, *choices: str, from_name: str = "choice", cancelled: bool = False
) -> dict[str, Any]:
    return {
        "id": annotation_id,
        "updated_at": updated_at,
        "was_cancelled": cancelled,
        "result": [
            {"from_name": from_name, "to_name": "image", "type": "choices", "value": {"choices": list(choices)}}
        ],
    }


def task(task_id: int, *annotations: dict[str, Any], image: str | None = "/data/upload/1/a.png") -> dict[str, Any]:
    data = {} if image is None else {"image": image}
    return {"id": task_id, "data": data, "annotations": list(annotations)}


def test_latest_updated_annotation_wins_over_a_higher_id() -> None:
    older = annotation(9, "2024-05-01T10:00:00.000000Z", "Dog")
    newer = annotation(3, "2024-05-02T09:00:00.000000Z", "Cat")

    snapshot = snapshot_tasks(1, [task(7, older, newer)], SINGLE)

    assert snapshot.tasks == (TaskRecord(7, "/data/upload/1/a.png", (0,)),)
    assert snapshot.rejected == ()


def test_higher_id_wins_when_updated_at_is_equal() -> None:
    first = annotation(4, "2024-05-01T10:00:00.000000Z", "Dog")
    second = annotation(5, "2024-05-01T10:00:00.000000Z", "Bird")

    assert latest_annotation([second, first]) is second


def test_latest_annotation_compares_times_not_strings() -> None:
    # Django REST framework drops the fraction when microseconds are 0, so ".5 s later" sorts lower as a string.
    on_the_second = annotation(4, "2024-05-01T10:00:00Z", "Dog")
    half_a_second_later = annotation(5, "2024-05-01T10:00:00.500000Z", "Cat")

    assert latest_annotation([on_the_second, half_a_second_later]) is half_a_second_later


def test_cancelled_annotation_is_not_a_label_and_the_earlier_one_counts() -> None:
    labeled = annotation(1, "2024-05-01T10:00:00.000000Z", "Dog")
    skipped = annotation(2, "2024-05-03T10:00:00.000000Z", "Cat", cancelled=True)

    snapshot = snapshot_tasks(1, [task(7, labeled, skipped)], SINGLE)

    assert snapshot.tasks == (TaskRecord(7, "/data/upload/1/a.png", (1,)),)


def test_task_with_only_cancelled_annotations_is_unlabeled_and_not_rejected() -> None:
    skipped = annotation(2, "2024-05-03T10:00:00.000000Z", "Cat", cancelled=True)

    snapshot = snapshot_tasks(1, [task(7, skipped)], SINGLE)

    assert snapshot.tasks == (TaskRecord(7, "/data/upload/1/a.png", ()),)
    assert snapshot.rejected == ()


def test_unknown_label_leaves_the_task_unlabeled_and_is_rejected_by_name() -> None:
    snapshot = snapshot_tasks(1, [task(7, annotation(1, "2024-05-01T10:00:00Z", "Horse"))], SINGLE)

    assert snapshot.tasks == (TaskRecord(7, "/data/upload/1/a.png", ()),)
    assert snapshot.unlabeled == [TaskRecord(7, "/data/upload/1/a.png", ())]
    assert snapshot.rejected == ((7, "labels ['Horse'] are not in the label config"),)


def test_two_labels_under_a_single_choice_config_are_rejected() -> None:
    snapshot = snapshot_tasks(1, [task(7, annotation(1, "2024-05-01T10:00:00Z", "Cat", "Dog"))], SINGLE)

    assert snapshot.tasks == (TaskRecord(7, "/data/upload/1/a.png", ()),)
    assert snapshot.rejected == ((7, "2 labels chosen but the config is single-choice"),)


def test_multi_label_config_keeps_every_chosen_label_in_config_order() -> None:
    snapshot = snapshot_tasks(1, [task(7, annotation(1, "2024-05-01T10:00:00Z", "Bird", "Cat"))], MULTI)

    assert snapshot.tasks == (TaskRecord(7, "/data/upload/1/a.png", (0, 2)),)
    assert snapshot.rejected == ()


def test_result_of_another_control_is_ignored() -> None:
    answer = annotation(1, "2024-05-01T10:00:00Z", "Dog")
    answer["result"].append(
        {"from_name": "quality", "to_name": "image", "type": "choices", "value": {"choices": ["Blurry"]}}
    )

    snapshot = snapshot_tasks(1, [task(7, answer)], SINGLE)

    assert snapshot.tasks == (TaskRecord(7, "/data/upload/1/a.png", (1,)),)
    assert snapshot.rejected == ()


def test_missing_or_empty_image_key_gives_no_image_url() -> None:
    tasks = [task(7, image=None), task(8, image="")]

    snapshot = snapshot_tasks(1, tasks, SINGLE)

    assert snapshot.tasks == (TaskRecord(7, None, ()), TaskRecord(8, None, ()))


def test_labeled_and_unlabeled_split_the_tasks_in_order() -> None:
    tasks = [
        task(1, annotation(1, "2024-05-01T10:00:00Z", "Bird")),
        task(2),
        task(3, annotation(2, "2024-05-01T10:00:00Z", "Cat")),
    ]

    snapshot = snapshot_tasks(1, tasks, SINGLE)

    assert [record.task_id for record in snapshot.labeled] == [1, 3]
    assert [record.task_id for record in snapshot.unlabeled] == [2]
