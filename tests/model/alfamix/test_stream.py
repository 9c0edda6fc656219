"""The stream queue on tiny pools whose answer is known: cold start, one label, one labeled class,
tied margins, a batch kept across rounds, a stale batch, audit slots and the baselines."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from model.alfamix.mixing import distinct_anchors
from model.alfamix.stream import STRATEGIES, CarriedBatch, StreamConfig, stream_queue
from model.errors import ModelInputError
from model.head import head_config_for, mixing_space, project, train_head

# Three tight groups of 2-D points, sorted by group as an import sorted by class would be.
CENTRES = np.array([[4.0, 0.0], [0.0, 4.0], [-4.0, -4.0]], dtype=np.float32)


def grouped_pool(per_group: int = 10, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = np.concatenate([c + 0.1 * rng.standard_normal((per_group, 2)) for c in CENTRES]).astype(np.float32)
    return torch.from_numpy(z), np.repeat(np.arange(len(CENTRES)), per_group)


def empty() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(0, 2), torch.zeros(0, dtype=torch.int64)


def test_with_no_label_the_cold_start_batch_has_one_task_of_every_group_first() -> None:
    z, group = grouped_pool()
    z_lab, y_lab = empty()

    queue = stream_queue(z_lab, y_lab, z, None, CarriedBatch.empty(), StreamConfig(n_query=3))

    assert (queue.batch_kind, queue.batch_event) == ("diversity", "new")
    assert sorted(group[queue.batch].tolist()) == [0, 1, 2]
    assert sorted(queue.order.tolist()) == list(range(30)) and queue.probs is None
    assert queue.order[:3].tolist() == queue.batch.tolist()
    assert queue.score[queue.order].tolist() == pytest.approx(np.linspace(0, 1, 30).tolist())


def test_one_labeled_class_gives_the_unlabeled_groups_first_never_index_order() -> None:
    z, group = grouped_pool()
    labeled = np.arange(5)  # five labels, all in group 0: the loss gradient is exactly zero
    z_lab, y_lab = z[labeled], torch.zeros(5, dtype=torch.int64)
    rest = np.arange(5, 30)
    head = train_head(z_lab, y_lab, 3)

    queue = stream_queue(z_lab, y_lab, z[rest], head, CarriedBatch.empty(), StreamConfig(n_query=3))

    assert (queue.batch_kind, queue.candidates.sum()) == ("diversity", 0)
    # One task per group, the labeled group last: the batch is ordered farthest from the labels first.
    assert sorted(group[rest][queue.batch[:2]].tolist()) == [1, 2] and group[rest][queue.batch[2]] == 0
    assert queue.order.tolist() != sorted(queue.order.tolist())


def test_one_label_is_one_labeled_class() -> None:
    z, group = grouped_pool()
    z_lab, y_lab = z[:1], torch.zeros(1, dtype=torch.int64)
    head = train_head(z_lab, y_lab, 3)

    queue = stream_queue(z_lab, y_lab, z[1:], head, CarriedBatch.empty(), StreamConfig(n_query=3))

    assert queue.batch_kind == "diversity" and queue.candidates.sum() == 0
    assert sorted(group[1:][queue.batch[:2]].tolist()) == [1, 2] and group[1:][queue.batch[2]] == 0


def test_tied_margins_are_ordered_by_diversity_and_seed_not_by_index() -> None:
    z, group = grouped_pool()
    head = nn.Linear(2, 3)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)  # every item gets 1/3 per class: margins tie, nothing can flip
    z_lab, y_lab = z[[0, 10]], torch.tensor([0, 1])

    first = stream_queue(z_lab, y_lab, z, head, CarriedBatch.empty(), StreamConfig(n_query=3), random_state=0)
    again = stream_queue(z_lab, y_lab, z, head, CarriedBatch.empty(), StreamConfig(n_query=3), random_state=0)
    other = stream_queue(z_lab, y_lab, z, head, CarriedBatch.empty(), StreamConfig(n_query=3), random_state=1)

    assert first.batch_kind == "diversity" and sorted(group[first.batch].tolist()) == [0, 1, 2]
    assert group[first.batch[0]] == 2  # the group farthest from both labels comes first
    assert np.array_equal(first.order, again.order) and not np.array_equal(first.order, other.order)
    assert first.order.tolist() != sorted(first.order.tolist())


def two_class_setting() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, nn.Module]:
    """A line of items between two labeled ends: those near the middle are the candidates."""
    x = np.linspace(-1, 1, 41, dtype=np.float32)
    z_unl = torch.from_numpy(np.stack([x, np.ones_like(x)], axis=1))  # (41, 2)
    z_lab = torch.tensor([[-1.2, 1.0], [1.2, 1.0]])
    y_lab = torch.tensor([0, 1])
    return z_lab, y_lab, z_unl, train_head(z_lab, y_lab, 2)


def test_a_new_alfamix_batch_is_drawn_from_the_candidates() -> None:
    z_lab, y_lab, z_unl, head = two_class_setting()

    queue = stream_queue(z_lab, y_lab, z_unl, head, CarriedBatch.empty(), StreamConfig(n_query=3))

    assert (queue.batch_kind, queue.batch_event) == ("alfamix", "new")
    assert queue.candidates[queue.batch].all() and 0 < queue.candidates.sum() < 41
    assert queue.probs is not None and queue.probs.shape == (41, 2)


def test_a_batch_keeps_its_place_and_order_while_some_member_is_still_a_candidate() -> None:
    z_lab, y_lab, z_unl, head = two_class_setting()
    first = stream_queue(z_lab, y_lab, z_unl, head, CarriedBatch.empty(), StreamConfig(n_query=3))
    # The annotator labels the first member; the next round carries the other two.
    carried = CarriedBatch(members=first.batch[1:], audit=first.batch[:0], kind="alfamix")

    second = stream_queue(z_lab, y_lab, z_unl, head, carried, StreamConfig(n_query=3))

    assert second.batch_event == "kept" and second.batch.tolist() == first.batch[1:].tolist()
    assert second.order[:2].tolist() == first.batch[1:].tolist()


def test_a_batch_no_member_of_which_is_a_candidate_any_more_is_stale_and_redrawn() -> None:
    z_lab, y_lab, z_unl, head = two_class_setting()
    first = stream_queue(z_lab, y_lab, z_unl, head, CarriedBatch.empty(), StreamConfig(n_query=3))
    far_ends = np.array([0, 40])  # the model is sure of both ends: neither is a candidate
    assert not first.candidates[far_ends].any()

    second = stream_queue(z_lab, y_lab, z_unl, head, CarriedBatch(far_ends, far_ends[:0]), StreamConfig(n_query=3))

    assert (second.batch_event, second.batch_kind) == ("stale", "alfamix")
    assert second.candidates[second.batch].all()


def test_a_diversity_batch_runs_to_its_end_even_once_there_are_candidates() -> None:
    z_lab, y_lab, z_unl, head = two_class_setting()
    carried = CarriedBatch(members=np.array([0, 40]), audit=np.zeros(0, dtype=np.int64), kind="diversity")

    queue = stream_queue(z_lab, y_lab, z_unl, head, carried, StreamConfig(n_query=3))

    assert (queue.batch_event, queue.batch_kind, queue.batch.tolist()) == ("kept", "diversity", [0, 40])


def test_an_emptied_batch_is_replaced_by_a_new_one() -> None:
    z_lab, y_lab, z_unl, head = two_class_setting()
    queue = stream_queue(z_lab, y_lab, z_unl, head, CarriedBatch.empty(), StreamConfig(n_query=4))
    assert (queue.batch_event, len(queue.batch)) == ("new", 4)


def test_audit_tasks_take_the_middle_slot_of_every_stretch_of_a_new_batch() -> None:
    z, _ = grouped_pool(per_group=20)
    z_lab, y_lab = empty()

    queue = stream_queue(z_lab, y_lab, z, None, CarriedBatch.empty(), StreamConfig(n_query=10, audit_fraction=0.2))

    assert len(queue.batch) == 10 and len(queue.audit) == 2
    assert queue.batch[[2, 7]].tolist() == queue.audit.tolist()  # two stretches of 5, slots 2.5 and 7.5
    assert len(set(queue.batch.tolist())) == 10


def test_a_redrawn_batch_keeps_the_audit_tasks_not_yet_labeled() -> None:
    z_lab, y_lab, z_unl, head = two_class_setting()
    far_ends = np.array([0, 40])  # neither is a candidate: the batch is stale; 40 was its audit task
    config = StreamConfig(n_query=4, audit_fraction=0.25)

    queue = stream_queue(z_lab, y_lab, z_unl, head, CarriedBatch(far_ends, np.array([40])), config)

    assert queue.batch_event == "stale" and queue.audit.tolist() == [40]
    assert queue.batch[2] == 40 and len(queue.batch) == 4  # slot 2 of 4: the middle of the one stretch


def test_the_rest_of_the_queue_takes_turns_between_the_regions_of_the_batch() -> None:
    z, group = grouped_pool(per_group=10)
    z_lab, y_lab = empty()

    queue = stream_queue(z_lab, y_lab, z, None, CarriedBatch.empty(), StreamConfig(n_query=3))

    # After the batch (one per group), every next three tasks again span the three groups.
    rest = group[queue.order[3:]]
    assert all(sorted(rest[i : i + 3].tolist()) == [0, 1, 2] for i in range(0, 27, 3))


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != "alfamix"])
def test_baselines_return_a_permutation_with_their_name(strategy: str) -> None:
    z_lab, y_lab, z_unl, head = two_class_setting()

    queue = stream_queue(z_lab, y_lab, z_unl, head, CarriedBatch.empty(), StreamConfig(strategy=strategy, n_query=5))

    assert sorted(queue.order.tolist()) == list(range(41))
    assert (queue.batch_kind, queue.batch_event, queue.batch.tolist()) == (
        strategy,
        "requeried",
        queue.order[:5].tolist(),
    )


def test_margin_and_entropy_take_the_middle_of_the_line_first() -> None:
    z_lab, y_lab, z_unl, head = two_class_setting()
    for strategy in ("margin", "entropy"):
        queue = stream_queue(z_lab, y_lab, z_unl, head, CarriedBatch.empty(), StreamConfig(strategy=strategy))
        assert abs(int(queue.order[0]) - 20) <= 1  # x = 0 is where the two classes meet


def test_coreset_takes_the_item_farthest_from_the_labels_first() -> None:
    z_lab, y_lab, z_unl, head = two_class_setting()
    queue = stream_queue(z_lab, y_lab, z_unl, head, CarriedBatch.empty(), StreamConfig(strategy="coreset", n_query=2))
    assert queue.order[0] == 20  # x = 0, 1.2 from both labels


def test_distinct_anchors_drop_repeated_rows_in_order() -> None:
    mean = [0.5, 0.5]
    anchors = torch.tensor([[1.0, 0.0], mean, [0.0, 1.0], mean, mean])
    assert distinct_anchors(anchors).tolist() == [[1.0, 0.0], mean, [0.0, 1.0]]


@pytest.mark.parametrize(
    ("config", "carried", "message"),
    [
        (StreamConfig(strategy="bald"), CarriedBatch.empty(), "strategy='bald' should be one of alfamix, random"),
        (StreamConfig(audit_fraction=1.0), CarriedBatch.empty(), "audit_fraction=1.0 should be in [0, 1)"),
        (StreamConfig(), CarriedBatch(np.array([3, 41]), np.zeros(0, np.int64)), "carried members span [3, 41]"),
        (StreamConfig(), CarriedBatch(np.array([3, 3]), np.zeros(0, np.int64)), "carried members repeat an item"),
        (StreamConfig(), CarriedBatch(np.array([3]), np.array([4])), "carried audit items must be members"),
    ],
)
def test_bad_input_is_refused_with_a_message(config: StreamConfig, carried: CarriedBatch, message: str) -> None:
    z_lab, y_lab, z_unl, head = two_class_setting()
    with pytest.raises(ModelInputError, match=re.escape(message)):
        stream_queue(z_lab, y_lab, z_unl, head, carried, config)


def test_coreset_without_labels_starts_from_a_seeded_random_item() -> None:
    z, _ = grouped_pool()
    z_lab, y_lab = empty()
    firsts = {
        int(stream_queue(z_lab, y_lab, z, None, CarriedBatch.empty(), StreamConfig("coreset", 3), seed).order[0])
        for seed in range(8)
    }
    again = stream_queue(z_lab, y_lab, z, None, CarriedBatch.empty(), StreamConfig("coreset", 3), 5).order
    assert len(firsts) > 1
    assert np.array_equal(
        again, stream_queue(z_lab, y_lab, z, None, CarriedBatch.empty(), StreamConfig("coreset", 3), 5).order
    )


@pytest.mark.parametrize("strategy", ["alfamix", "coreset"])
def test_with_a_projection_head_the_queue_is_the_one_of_the_projected_space(strategy: str) -> None:
    z, group = grouped_pool(per_group=20)
    labeled = np.array([0, 1, 20, 21, 40, 41])
    rest = np.setdiff1d(np.arange(60), labeled)
    z_lab, y_lab = z[labeled], torch.from_numpy(group[labeled])
    mlp = train_head(z_lab, y_lab, 3, head_config_for("projection"))
    config = StreamConfig(strategy=strategy, n_query=4)

    queue = stream_queue(z_lab, y_lab, z[rest], mlp, CarriedBatch.empty(), config)
    projection, classifier = mixing_space(mlp)
    h_lab, h_unl = project(projection, z_lab), project(projection, z[rest])  # (6, 256), (54, 256)
    in_projected_space = stream_queue(h_lab, y_lab, h_unl, classifier, CarriedBatch.empty(), config)

    assert queue.order.tolist() == in_projected_space.order.tolist()
    assert queue.candidates.tolist() == in_projected_space.candidates.tolist()
    assert np.allclose(queue.probs, in_projected_space.probs)
