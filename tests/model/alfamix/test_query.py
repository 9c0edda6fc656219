"""query(): properties of the full queue, edge cases, input errors, the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bench.reference_alfamix import query_reference_alfamix
from bench.synthetic import make_query_inputs
from model.alfamix import QueryConfig, query
from model.errors import ModelInputError
from tests.model.alfamix.conftest import clustered_pool, fitted_linear_head, linear_head


@pytest.fixture(scope="module")
def pool() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, nn.Linear]:
    z_lab, y_lab, z_unl, _ = clustered_pool(600, 32, 5, dead_dims=4, class_dims=5, seed=11)
    return z_lab, y_lab, z_unl, fitted_linear_head(z_lab, y_lab, 5)


def check_queue(result, n_items: int, n_query: int) -> None:
    assert sorted(result.order.tolist()) == list(range(n_items))
    assert len(result.selected) == min(n_query, n_items)
    assert len(set(result.selected.tolist())) == len(result.selected)
    assert result.order[: len(result.selected)].tolist() == result.selected.tolist()
    assert np.all(np.diff(result.score[result.order]) > 0)
    assert result.score.min() == 0.0 and result.score.max() == (1.0 if n_items > 1 else 0.0)


@pytest.mark.parametrize("mode", ["closed_form", "learned"])
def test_queue_is_a_permutation_with_the_batch_of_distinct_candidates_first(pool, mode) -> None:
    z_lab, y_lab, z_unl, head = pool
    result = query(z_lab, y_lab, z_unl, head, QueryConfig(n_query=30, mode=mode), random_state=0)
    check_queue(result, 600, 30)
    assert int(result.candidates.sum()) > 30
    assert result.candidates[result.selected].all()
    batch_clusters = result.cluster[result.selected]
    assert sorted(batch_clusters.tolist()) == list(range(30))
    assert (np.delete(result.cluster, result.selected) == -1).all()
    # After the batch: the other candidates, then the non-candidates.
    rest = result.order[30:]
    n_other_candidates = int(result.candidates.sum()) - 30
    assert result.candidates[rest[:n_other_candidates]].all()
    assert not result.candidates[rest[n_other_candidates:]].any()


def test_same_seed_same_output_and_seed_changes_selection(pool) -> None:
    z_lab, y_lab, z_unl, head = pool
    config = QueryConfig(n_query=30)
    first = query(z_lab, y_lab, z_unl, head, config, random_state=3)
    second = query(z_lab, y_lab, z_unl, head, config, random_state=3)
    other = query(z_lab, y_lab, z_unl, head, config, random_state=4)
    assert np.array_equal(first.order, second.order) and np.array_equal(first.score, second.score)
    assert np.array_equal(first.candidates, other.candidates)
    assert set(first.selected.tolist()) != set(other.selected.tolist())


def test_pool_smaller_than_n_query_is_filled_with_unique_items(pool) -> None:
    z_lab, y_lab, z_unl, head = pool
    result = query(z_lab, y_lab, z_unl[:12], head, QueryConfig(n_query=50))
    check_queue(result, 12, 50)


def test_few_candidates_fill_the_batch_with_least_confident_items() -> None:
    # The 2-D boundary case padded to D = 100 zeros, so eps' = cap / 10 keeps the steps short:
    # only u0 = (1, 0.9) flips (at cap 0.6); the fill takes the smallest margins next.
    def padded(rows: list[list[float]]) -> torch.Tensor:
        return nn.functional.pad(torch.tensor(rows), (0, 98))

    z_lab, y_lab = padded([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1])
    z_unl = padded([[1.0, 0.9], [5.0, 0.0], [0.0, 3.0], [4.0, 0.0], [2.0, 1.0]])
    head = linear_head(padded([[1.0, 0.0], [0.0, 1.0]]).tolist())
    result = query(z_lab, y_lab, z_unl, head, QueryConfig(n_query=3))
    assert result.candidates.tolist() == [True, False, False, False, False]
    assert result.first_flip_cap[0] == pytest.approx(0.6)
    assert result.selected.tolist() == [0, 4, 2]  # margins: u4 0.46 < u2 0.91 < u3 0.96 < u1 0.99
    assert result.order.tolist() == [0, 4, 2, 3, 1]
    assert result.cluster.tolist() == [0, -1, -1, -1, -1]


def test_empty_pool_gives_empty_outputs(pool) -> None:
    z_lab, y_lab, z_unl, head = pool
    result = query(z_lab, y_lab, z_unl[:0], head, QueryConfig(n_query=5))
    assert result.order.shape == (0,) and result.selected.shape == (0,) and result.score.dtype == np.float32


def test_one_labeled_class_uses_the_overall_mean_for_the_others(pool) -> None:
    z_lab, y_lab, z_unl, head = pool
    only_zero = y_lab == 0
    result = query(z_lab[only_zero], y_lab[only_zero], z_unl, head, QueryConfig(n_query=10))
    check_queue(result, 600, 10)


def test_one_dimensional_two_class_pool() -> None:
    head = linear_head([[-1.0], [1.0]])  # class 1 when z > 0
    z_unl = torch.tensor([[-0.05], [-3.0], [0.02], [2.0]])
    result = query(torch.tensor([[-1.0], [1.0]]), torch.tensor([0, 1]), z_unl, head, QueryConfig(n_query=1))
    assert result.candidates.tolist() == [True, False, True, False]
    check_queue(result, 4, 1)


def test_candidates_equal_the_reference_on_realistic_inputs() -> None:
    inputs = make_query_inputs(3000, dim=64, n_classes=10, n_lab=100, random_state=1)
    z_lab, z_unl = torch.from_numpy(inputs["lb_emb"]), torch.from_numpy(inputs["ulb_emb"])
    y_lab = torch.from_numpy(inputs["lb_y"]).long()
    weight, bias = torch.from_numpy(inputs["head_w"]), torch.from_numpy(inputs["head_b"])
    reference = query_reference_alfamix(z_lab, y_lab, z_unl, weight, bias, n_query=100, random_state=0)
    head = linear_head(weight.tolist(), bias.tolist())
    ours = query(z_lab, y_lab, z_unl, head, QueryConfig(n_query=100), random_state=0)
    assert ours.caps == reference.caps
    assert np.array_equal(ours.candidates, reference.candidates)
    assert ours.candidates.sum() > 100


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_query": 0}, "n_query=0 should be >= 1"),
        ({"y_lab": torch.tensor([0, 7])}, "y_lab values span [0, 7], outside [0, 1]"),
        ({"z_unl": torch.tensor([[float("nan")]])}, "z_unl contains NaN or inf"),
        ({"z_lab": torch.zeros(2, 3)}, "z_lab shape (2, 3) should be (L, D) with D=1 like z_unl"),
        ({"z_lab": torch.zeros(0, 1), "y_lab": torch.zeros(0, dtype=torch.int64)}, "no labeled embeddings"),
        ({"y_lab": torch.tensor([0.0, 1.0])}, "y_lab should be int64 of shape (2,)"),
        ({"cap_step": 0.0}, "cap_step=0.0 should be in (0, 1]"),
    ],
)
def test_bad_input_raises_a_named_error_with_the_values(change, message) -> None:
    inputs = {
        "z_lab": torch.tensor([[-1.0], [1.0]]),
        "y_lab": torch.tensor([0, 1]),
        "z_unl": torch.tensor([[0.5]]),
        "n_query": 1,
        "cap_step": None,
    }
    inputs.update(change)
    config = QueryConfig(n_query=inputs.pop("n_query"), cap_step=inputs.pop("cap_step"))
    with pytest.raises(ModelInputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        query(**inputs, head=linear_head([[-1.0], [1.0]]), config=config)
