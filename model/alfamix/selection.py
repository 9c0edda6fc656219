"""Diverse selection: k-means over candidate embeddings, one representative per cluster.

Parvaneh et al., CVPR 2022 (arXiv:2203.07034), section 3.3: the candidates are
clustered into n_query groups on L2-normalised embeddings, and from each
cluster the member nearest its centre is taken.

K-means here is k-means++ seeding (greedy, 2 + ln k trials per centre, as in
scikit-learn) followed by Lloyd iterations, in torch so it runs on whatever
device the embeddings are on. Its cost is what dominates the reference's query.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class KMeansConfig:
    """Settings of the k-means that picks the batch."""

    n_init: int = 1  # restarts; the best inertia wins (the reference uses 10)
    max_iter: int = 100
    tol: float = 1e-4  # of the mean per-feature variance, as in scikit-learn
    max_rows: int = 20_000  # above this, cluster a seeded random subset of the rows


@dataclass(frozen=True)
class DiverseSelection:
    """Indices into the clustered rows, one per non-empty cluster, in cluster order."""

    picks: torch.Tensor  # (n,) int64
    clusters: torch.Tensor  # (n,) int64, the cluster each pick represents


def select_diverse(
    features: torch.Tensor,
    n_select: int,
    generator: torch.Generator,
    config: KMeansConfig = KMeansConfig(),
) -> DiverseSelection:
    """Pick exactly min(n_select, M) distinct rows of ``features`` (M, D) that cover them.

    The rows are clustered into n_select groups; each non-empty cluster gives
    its member nearest the centre. If clusters came out empty (duplicated
    rows), the rows farthest from every pick so far fill up the count.
    """
    n_rows = len(features)
    n_select = min(n_select, n_rows)
    if n_select == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=features.device)
        return DiverseSelection(picks=empty, clusters=empty)
    if n_select == n_rows:
        everything = torch.arange(n_rows, device=features.device)
        return DiverseSelection(picks=everything, clusters=everything)
    centres = fit_kmeans(features, n_select, generator, config)  # (k, D)
    labels, sq_dist = _assign(features, centres)  # (M,), (M,)
    # Nearest member of each cluster: sort by (cluster, distance), take the first of each run.
    order = torch.argsort(sq_dist)
    order = order[torch.argsort(labels[order], stable=True)]
    is_first = torch.ones(n_rows, dtype=torch.bool, device=features.device)
    is_first[1:] = labels[order][1:] != labels[order][:-1]
    picks, clusters = order[is_first], labels[order][is_first]
    if len(picks) < n_select:
        extra = _farthest_from(features, picks, n_select - len(picks))
        picks = torch.cat([picks, extra])
        clusters = torch.cat([clusters, torch.full_like(extra, -1)])
    return DiverseSelection(picks=picks, clusters=clusters)


def subsample(n_rows: int, max_rows: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """All row indices if n_rows <= max_rows, else a seeded random subset of max_rows, sorted."""
    if n_rows <= max_rows:
        return torch.arange(n_rows, device=device)
    return torch.randperm(n_rows, generator=generator, device=device)[:max_rows].sort().values


def fit_kmeans(
    features: torch.Tensor, n_clusters: int, generator: torch.Generator, config: KMeansConfig
) -> torch.Tensor:
    """Cluster centres (k, D) of the lowest-inertia run out of ``config.n_init``."""
    tol = config.tol * float(features.var(dim=0, unbiased=False).mean())
    best_centres, best_inertia = None, math.inf
    for _ in range(config.n_init):
        seeds = _kmeans_plus_plus(features, n_clusters, generator)
        centres = _lloyd(features, seeds, config.max_iter, tol)
        inertia = float(_assign(features, centres)[1].sum())
        if inertia < best_inertia:
            best_centres, best_inertia = centres, inertia
    assert best_centres is not None  # n_init >= 1 is validated by the caller
    return best_centres


def _kmeans_plus_plus(x: torch.Tensor, n_clusters: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding: each new centre is the best of 2 + ln k sampled trials."""
    n_trials = 2 + int(math.log(n_clusters))
    sq_norms = (x * x).sum(dim=1)  # (M,)
    first = int(torch.randint(len(x), (1,), generator=generator, device=x.device))
    centres = [x[first]]
    closest = _sq_distances(x, sq_norms, x[first : first + 1])[:, 0]  # (M,)
    for _ in range(1, n_clusters):
        # Sample trials with probability proportional to the current squared distance.
        cumulative = closest.double().cumsum(0)  # (M,)
        targets = torch.rand(n_trials, generator=generator, device=x.device, dtype=torch.float64)
        trials = torch.searchsorted(cumulative, targets * cumulative[-1]).clamp(max=len(x) - 1)
        trial_closest = torch.minimum(closest[:, None], _sq_distances(x, sq_norms, x[trials]))  # (M, t)
        best = int(trial_closest.sum(dim=0).argmin())
        centres.append(x[trials[best]])
        closest = trial_closest[:, best]
    return torch.stack(centres)  # (k, D)


def _lloyd(x: torch.Tensor, centres: torch.Tensor, max_iter: int, tol: float) -> torch.Tensor:
    """Lloyd iterations until no label changes or the centres move less than ``tol`` (squared shift)."""
    n_clusters = len(centres)
    sq_norms = (x * x).sum(dim=1)  # (M,)
    previous = None
    for _ in range(max_iter):
        labels, sq_dist = _assign(x, centres, sq_norms)  # (M,), (M,)
        if previous is not None and torch.equal(labels, previous):
            break  # converged exactly: the centres would not move
        previous = labels
        sums = torch.zeros_like(centres).index_add_(0, labels, x)  # (k, D)
        counts = torch.bincount(labels, minlength=n_clusters)  # (k,)
        moved = sums / counts.clamp(min=1)[:, None].to(x.dtype)  # (k, D)
        empty = (counts == 0).nonzero(as_tuple=True)[0]
        if len(empty):
            # Re-seed empty clusters at the points worst served, like scikit-learn.
            moved[empty] = x[sq_dist.topk(len(empty)).indices]
        shift = float(((moved - centres) ** 2).sum())
        centres = moved
        if shift <= tol:
            break
    return centres


def _assign(
    x: torch.Tensor, centres: torch.Tensor, sq_norms: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre of each row (M,) and the squared distance to it (M,); sq_norms = ||x||^2 if known."""
    sq_dist = _sq_distances(x, (x * x).sum(dim=1) if sq_norms is None else sq_norms, centres)  # (M, k)
    nearest = sq_dist.min(dim=1)
    return nearest.indices, nearest.values


def _sq_distances(x: torch.Tensor, sq_norms: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (M, k), clamped at 0 against rounding."""
    squared = torch.addmm(sq_norms[:, None] + (centres * centres).sum(dim=1), x, centres.T, alpha=-2)  # (M, k)
    return squared.clamp_(min=0)


def _farthest_from(features: torch.Tensor, picks: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` rows not in ``picks``, greedily farthest from the picks so far (k-center)."""
    sq_norms = (features * features).sum(dim=1)  # (M,)
    closest = _sq_distances(features, sq_norms, features[picks]).amin(dim=1)  # (M,)
    closest[picks] = -1.0
    chosen = []
    for _ in range(count):
        index = int(closest.argmax())
        chosen.append(index)
        closest = torch.minimum(closest, _sq_distances(features, sq_norms, features[index : index + 1])[:, 0])
        closest[index] = -1.0
    return torch.tensor(chosen, dtype=torch.int64, device=features.device)
