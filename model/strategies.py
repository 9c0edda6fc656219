"""Baseline query strategies as full queue orders: random, entropy, margin and k-center coreset.

Each takes the labeled (L, D) and unlabeled (N, D) embeddings and the head's class
probabilities (N, C) (None before the first label) and returns a permutation (N,) of the
unlabeled items, label-first first. Ties break in a seeded random order, never by index, so
an import sorted by class is not served in that order. Before the first label every
baseline is random: the uncertainty baselines have nothing to be uncertain with, and
coreset starts from one random item.
"""

from __future__ import annotations

import numpy as np
import torch

BASELINES = ("random", "entropy", "margin", "coreset")


def baseline_order(
    strategy: str,
    z_lab: torch.Tensor,
    z_unl: torch.Tensor,
    probs: np.ndarray | None,
    n_query: int,
    random_state: int,
) -> np.ndarray:
    """The queue (N,) of one baseline; ``n_query`` is how many coreset picks are greedy."""
    if strategy not in BASELINES:
        raise ValueError(f"strategy={strategy!r} should be one of {', '.join(BASELINES)}")
    # Seeded by the labeled count too, so each round draws a fresh random order.
    rng = np.random.default_rng([random_state, len(z_lab)])
    tiebreak = rng.permutation(len(z_unl))  # (N,)
    if strategy == "coreset":
        return coreset_order(z_lab, z_unl, n_query, tiebreak)
    if strategy == "random" or probs is None:
        return tiebreak.astype(np.int64)
    if strategy == "entropy":
        key = (probs * np.log(np.clip(probs, 1e-12, None))).sum(axis=1)  # -entropy, (N,)
    else:
        top2 = -np.sort(-probs, axis=1)[:, :2]  # (N, 2)
        key = top2[:, 0] - top2[:, -1]  # margin
    return np.lexsort((tiebreak, key)).astype(np.int64)


def coreset_order(z_lab: torch.Tensor, z_unl: torch.Tensor, n_greedy: int, tiebreak: np.ndarray) -> np.ndarray:
    """K-center greedy (Sener & Savarese, 2018): ``n_greedy`` items each farthest from everything
    labeled or picked so far, then the rest farthest from those first."""
    sq_unl = (z_unl * z_unl).sum(dim=1)  # (N,)

    def sq_dist(centres: torch.Tensor) -> torch.Tensor:
        return (sq_unl[:, None] - 2 * z_unl @ centres.T + (centres * centres).sum(dim=1)).clamp(min=0)  # (N, m)

    chosen: list[int] = []
    if len(z_lab):
        closest = sq_dist(z_lab).amin(dim=1)  # (N,)
    else:  # no labels: start from a random item
        chosen.append(int(tiebreak[0]))
        closest = sq_dist(z_unl[chosen])[:, 0]
        closest[chosen[0]] = -1.0
    while len(chosen) < min(n_greedy, len(z_unl)):
        index = int(closest.argmax())
        chosen.append(index)
        closest = torch.minimum(closest, sq_dist(z_unl[index : index + 1])[:, 0])
        closest[index] = -1.0  # never again, even where duplicated rows leave it at distance 0
    picked = np.array(chosen, dtype=np.int64)
    rest = np.lexsort((tiebreak, -closest.numpy()))
    return np.concatenate([picked, rest[: len(z_unl) - len(picked)]]).astype(np.int64)
