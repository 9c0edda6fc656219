"""K-means diverse selection: one representative per cluster, exactly n distinct picks."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import KMeans

from model.alfamix.selection import KMeansConfig, select_diverse, subsample


def blobs(centres: list[list[float]], per_blob: int = 5, spread: float = 0.01) -> torch.Tensor:
    """Rows around each centre, the centre itself first, the others symmetric around it."""
    rows = []
    for centre in centres:
        c = torch.tensor(centre)
        rows.append(c)
        for i in range(1, per_blob):
            offset = torch.zeros_like(c)
            offset[i % len(c)] = spread * (1 if i % 2 else -1)
            rows.append(c + offset)
    return torch.stack(rows)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_one_pick_per_blob_and_it_is_the_blob_centre() -> None:
    features = blobs([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # centres at rows 0, 5, 10
    selection = select_diverse(features, 3, generator())
    assert sorted(selection.picks.tolist()) == [0, 5, 10]
    assert sorted(selection.clusters.tolist()) == [0, 1, 2]


def test_returns_exactly_n_distinct_rows() -> None:
    features = torch.randn(200, 8, generator=generator(1))
    picks = select_diverse(features, 37, generator()).picks
    assert len(picks) == 37 and len(set(picks.tolist())) == 37


def test_duplicated_rows_still_give_n_distinct_picks() -> None:
    features = torch.ones(10, 4)  # one distinct point: k-means leaves clusters empty
    selection = select_diverse(features, 3, generator())
    assert len(set(selection.picks.tolist())) == 3
    assert (selection.clusters == -1).sum() == 2  # the fill picks have no cluster


def test_fewer_rows_than_requested_selects_all() -> None:
    features = torch.randn(4, 3, generator=generator())
    assert select_diverse(features, 10, generator()).picks.tolist() == [0, 1, 2, 3]
    assert select_diverse(features[:0], 10, generator()).picks.tolist() == []


def test_same_seed_same_selection() -> None:
    features = torch.randn(300, 16, generator=generator(2))
    first = select_diverse(features, 20, generator(5)).picks
    second = select_diverse(features, 20, generator(5)).picks
    assert torch.equal(first, second)


def test_matches_scikit_learn_kmeans_with_ten_restarts_on_separated_clusters() -> None:
    # The reference selects with sklearn KMeans(n_init=10); where the clustering is unambiguous,
    # the same representatives come out (up to cluster numbering).
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 16)) * 5
    features = np.concatenate([c + rng.normal(scale=0.1, size=(20, 16)) for c in centres]).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    kmeans = KMeans(12, n_init=10, random_state=0).fit(features)
    distance = ((features - kmeans.cluster_centers_[kmeans.labels_]) ** 2).sum(1)
    expected = {int(np.flatnonzero(kmeans.labels_ == i)[distance[kmeans.labels_ == i].argmin()]) for i in range(12)}
    picks = select_diverse(torch.from_numpy(features), 12, generator(), KMeansConfig(n_init=1)).picks
    assert set(picks.tolist()) == expected


def test_subsample_keeps_all_rows_below_the_limit_and_is_sorted_above() -> None:
    assert subsample(5, 10, generator(), torch.device("cpu")).tolist() == [0, 1, 2, 3, 4]
    rows = subsample(100, 10, generator(), torch.device("cpu"))
    assert len(set(rows.tolist())) == 10 and rows.tolist() == sorted(rows.tolist())
