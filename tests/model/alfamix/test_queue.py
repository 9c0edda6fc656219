"""Queue order: batch first, then candidates by inconsistency, then the rest by margin."""

from __future__ import annotations

import numpy as np

from model.alfamix.queue import build_queue, rank_rest

INF = np.inf


def test_candidates_rank_by_cap_then_flip_count_then_margin_then_index() -> None:
    candidates = np.array([True, True, True, True, True, False, False])
    first_cap = np.array([0.4, 0.2, 0.2, 0.2, 0.2, INF, INF], dtype=np.float32)
    flip_count = np.array([9, 1, 5, 5, 5, 0, 0])
    margin = np.array([0.0, 0.0, 0.3, 0.1, 0.1, 0.9, 0.2])
    ranked = rank_rest(candidates, first_cap, flip_count, margin, exclude=np.array([], dtype=np.int64))
    # 3 and 4 tie on cap, count and margin: index decides. Non-candidates: smaller margin first.
    assert ranked.tolist() == [3, 4, 2, 1, 0, 6, 5]


def test_excluded_items_are_left_out() -> None:
    ranked = rank_rest(
        np.array([False, False, False]),
        np.full(3, INF),
        np.zeros(3, dtype=np.int64),
        np.array([0.3, 0.2, 0.1]),
        exclude=np.array([2]),
    )
    assert ranked.tolist() == [1, 0]


def test_queue_puts_batch_first_and_scores_ranks_in_unit_interval() -> None:
    queue = build_queue(np.array([4, 1]), np.array([0, 1]), np.array([0, 3, 2]))
    assert queue.order.tolist() == [4, 1, 0, 3, 2]
    assert queue.score.tolist() == [0.5, 0.25, 1.0, 0.75, 0.0]
    assert queue.cluster.tolist() == [-1, 1, -1, -1, 0]
    assert queue.score.dtype == np.float32


def test_single_item_queue_scores_zero() -> None:
    queue = build_queue(np.array([0]), np.array([3]), np.array([], dtype=np.int64))
    assert queue.score.tolist() == [0.0] and queue.cluster.tolist() == [3]
