"""Turn a query's outputs into an order over every unlabeled item.

Label Studio needs a full queue, not only the batch. The order is:

1. the selected batch, in the order selection returned it (k-means cluster order,
   then fill);
2. the other candidates, most inconsistent first: lowest cap at which they first
   flipped, then most anchors flipping them at that cap, then smallest margin
   between the top two predicted probabilities;
3. the non-candidates, least confident first: smallest margin.

The norm of the smallest flipping alpha is reported but not used to rank: with
post-ReLU features a coordinate where anchor and item are both 0 gives
alpha = c * g / 1e-8 there, so the norm measures dead units, not inconsistency
(median 6e5 over the candidates of the 20k synthetic benchmark pool).

Ties break by item index, so the order is a deterministic function of its inputs.
Each item also gets a score in [0, 1], its rank divided by N - 1 (lower = label
sooner, which is what Label Studio's uncertainty sampling serves first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Queue:
    """A permutation of the N unlabeled items with a score and cluster id per item."""

    order: np.ndarray  # (N,) int64, item indices, first = label first
    score: np.ndarray  # (N,) float32 in [0, 1], lower = label sooner
    cluster: np.ndarray  # (N,) int64, k-means cluster of batch items, -1 elsewhere


def rank_rest(
    candidates: np.ndarray,
    first_flip_cap: np.ndarray,
    flip_count: np.ndarray,
    margin: np.ndarray,
    exclude: np.ndarray,
) -> np.ndarray:
    """Items not in ``exclude``: candidates by inconsistency, then the rest by margin."""
    index = np.arange(len(candidates))
    # np.lexsort sorts by the last key first.
    keys = (index, margin, -flip_count, first_flip_cap, ~candidates)
    ranked = np.lexsort(keys)
    excluded = np.zeros(len(candidates), dtype=bool)
    excluded[exclude] = True
    return ranked[~excluded[ranked]].astype(np.int64)


def build_queue(batch: np.ndarray, batch_clusters: np.ndarray, rest: np.ndarray) -> Queue:
    """The batch first, then ``rest``; scores are ranks scaled to [0, 1]."""
    order = np.concatenate([batch, rest]).astype(np.int64)
    n_items = len(order)
    score = np.empty(n_items, dtype=np.float32)
    score[order] = np.arange(n_items, dtype=np.float64) / max(n_items - 1, 1)
    cluster = np.full(n_items, -1, dtype=np.int64)
    cluster[batch] = batch_clusters
    return Queue(order=order, score=score, cluster=cluster)
