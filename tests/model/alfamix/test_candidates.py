"""Closed-form candidate search against hand-worked cases and a plain per-anchor loop."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from model.alfamix.candidates import CandidateSearch, search_closed_form
from model.alfamix.mixing import cap_schedule, compute_anchors
from tests.model.alfamix.conftest import clustered_pool, fitted_linear_head

CAPS = cap_schedule(0.2)


def search(head: nn.Module, z_lab, y_lab, z_unl, n_query: int, chunk_size: int = 64) -> CandidateSearch:
    n_classes = int(head(z_unl[:1]).shape[1])
    anchors = compute_anchors(z_lab, y_lab, n_classes)
    with torch.no_grad():
        labels = head(z_unl).argmax(dim=1)
        return search_closed_form(head, z_unl, anchors, labels, n_query=n_query, caps=CAPS, chunk_size=chunk_size)


def reference_loop(head: nn.Module, z_lab, y_lab, z_unl, n_query: int) -> dict[str, list]:
    """The reference's formula, one anchor at a time, written out plainly."""
    n_classes = int(head(z_unl[:1]).shape[1])
    z = z_unl.detach().requires_grad_(True)
    logits = head(z)
    labels = logits.argmax(dim=1)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(logits, labels), z)
    n, dim = z_unl.shape
    first_cap = torch.full((n,), math.inf, dtype=torch.float64)
    count = torch.zeros(n, dtype=torch.int64)
    min_norm = torch.full((n,), math.inf, dtype=torch.float64)
    for cap in CAPS:
        eps = cap / math.sqrt(dim)
        for k in range(n_classes):
            members = z_lab[y_lab == k]
            anchor = (members if len(members) else z_lab).mean(dim=0).repeat(n, 1)
            diff = anchor - z_unl
            alpha = (eps * diff.norm(dim=1) / grad.norm(dim=1)).unsqueeze(1) * grad / (diff + 1e-8)
            mixed = (1 - alpha) * z_unl + alpha * anchor
            with torch.no_grad():
                flips = head(mixed).argmax(dim=1) != labels
            first_now = flips & ((first_cap == math.inf) | (first_cap == cap))
            first_cap[first_now] = cap
            count[first_now] += 1
            norms = alpha.detach().norm(dim=1).double()
            min_norm[flips] = torch.minimum(min_norm[flips], norms[flips])
        if int((first_cap < math.inf).sum()) > n_query:
            break
    return {"first_cap": first_cap.tolist(), "count": count.tolist(), "min_norm": min_norm.tolist()}


def test_hand_worked_boundary_case(boundary_case) -> None:
    # u0 = (1, 0.9) sits next to the boundary: every anchor flips it at cap 0.2.
    # u2 = (0.5, 1) needs c > 0.662 along g: anchor (2,0) gives c = 2.39 cap (flips at 0.4),
    # anchor (0,2) gives c = 1.48 cap (flips at 0.6). u1 = (3, 0) only flips at cap 1.0, never reached:
    # after cap 0.4 there are 2 > n_query = 1 candidates.
    result = search(n_query=1, **boundary_case)
    assert result.candidates.tolist() == [True, False, True]
    assert result.first_flip_cap.tolist() == [pytest.approx(0.2), math.inf, pytest.approx(0.4)]
    assert result.flip_count.tolist() == [2, 0, 1]
    assert result.caps == [0.2, 0.4]
    # ||alpha|| at cap 0.2 for u0: anchor (0,2) gives 0.31294 * ||(0.475, 0.4318)|| = 0.2009.
    assert result.min_alpha_norm[0].item() == pytest.approx(0.2009, abs=2e-4)
    assert result.min_alpha_norm[1].item() == math.inf


def test_far_point_flips_only_at_full_cap_and_dead_coordinate_stays(boundary_case) -> None:
    # u1 = (3, 0): anchor (2,0) differs only in x, so d_y = 0 and the 1e-8 term keeps y fixed:
    # it never flips. Anchor (0,2) flips it once c > 31.6, i.e. first at cap 1.0.
    result = search(n_query=10, **boundary_case)
    assert result.first_flip_cap.tolist() == [pytest.approx(0.2), 1.0, pytest.approx(0.4)]
    assert result.flip_count.tolist() == [2, 1, 1]
    assert result.caps == CAPS


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("n_unl", "dim", "n_classes", "dead_dims", "class_dims"),
    [(300, 16, 3, 0, 0), (400, 64, 10, 0, 0), (300, 64, 5, 8, 10), (500, 128, 10, 16, 20), (200, 1, 2, 0, 0)],
)
def test_fast_linear_path_equals_per_anchor_loop(dtype, n_unl, dim, n_classes, dead_dims, class_dims) -> None:
    z_lab, y_lab, z_unl, _ = clustered_pool(
        n_unl, dim, n_classes, dead_dims=dead_dims, class_dims=class_dims, seed=dim, dtype=dtype
    )
    head = fitted_linear_head(z_lab, y_lab, n_classes)
    for n_query in (5, n_unl):
        expected = reference_loop(head, z_lab, y_lab, z_unl, n_query)
        result = search(head, z_lab, y_lab, z_unl, n_query)
        assert result.first_flip_cap.tolist() == pytest.approx(expected["first_cap"])
        assert result.flip_count.tolist() == expected["count"]
        assert result.min_alpha_norm.tolist() == pytest.approx(expected["min_norm"], rel=1e-4)


def test_generic_head_path_equals_per_anchor_loop() -> None:
    z_lab, y_lab, z_unl, _ = clustered_pool(300, 32, 4, dead_dims=4, class_dims=8, seed=3)
    torch.manual_seed(0)
    head = nn.Sequential(nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 4)).eval()
    expected = reference_loop(head, z_lab, y_lab, z_unl, n_query=300)
    result = search(head, z_lab, y_lab, z_unl, n_query=300)
    assert sum(c < math.inf for c in expected["first_cap"]) > 20  # the case is not trivial
    assert result.first_flip_cap.tolist() == pytest.approx(expected["first_cap"])
    assert result.flip_count.tolist() == expected["count"]


def test_dead_units_change_decisions_so_the_exact_term_matters() -> None:
    # Without the 1e-8 term every anchor would move z_u by c_k * g in all coordinates.
    z_lab, y_lab, z_unl, _ = clustered_pool(500, 128, 10, dead_dims=16, class_dims=40, seed=5)
    head = fitted_linear_head(z_lab, y_lab, 10)
    anchors = compute_anchors(z_lab, y_lab, 10)
    with torch.no_grad():
        logits = head(z_unl)
        labels = logits.argmax(dim=1)
        residual = torch.softmax(logits, dim=1) - nn.functional.one_hot(labels, 10)
        grad = residual @ head.weight
        step = torch.cdist(z_unl, anchors) / grad.norm(dim=1, keepdim=True) / math.sqrt(128)
        naive = (logits[:, None, :] + (0.2 * step)[..., None] * (grad @ head.weight.T)[:, None, :]).argmax(2)
    naive_flips = naive != labels[:, None]
    expected = reference_loop(head, z_lab, y_lab, z_unl, n_query=500)
    exact_at_first_cap = torch.tensor([c == pytest.approx(0.2) for c in expected["first_cap"]])
    assert (naive_flips.any(dim=1) != exact_at_first_cap).sum() > 0
    result = search(head, z_lab, y_lab, z_unl, n_query=500)
    assert result.first_flip_cap.tolist() == pytest.approx(expected["first_cap"])


def test_zero_gradient_item_is_never_a_candidate() -> None:
    # Logits (0, 1000): softmax is exactly one-hot in float32, so g = 0 and nothing moves.
    head = nn.Linear(1, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.0], [1.0]]))
        head.bias.zero_()
    result = search(head, torch.tensor([[0.0], [5.0]]), torch.tensor([0, 1]), torch.tensor([[1000.0]]), n_query=1)
    assert result.candidates.tolist() == [False]
    assert result.first_flip_cap.tolist() == [math.inf]


def test_chunk_size_does_not_change_the_result() -> None:
    z_lab, y_lab, z_unl, _ = clustered_pool(257, 32, 5, dead_dims=4, class_dims=5, seed=9)
    head = fitted_linear_head(z_lab, y_lab, 5)
    one = search(head, z_lab, y_lab, z_unl, n_query=20, chunk_size=1)
    many = search(head, z_lab, y_lab, z_unl, n_query=20, chunk_size=1000)
    assert torch.equal(one.first_flip_cap, many.first_flip_cap)
    assert torch.equal(one.flip_count, many.flip_count)
    assert torch.allclose(one.min_alpha_norm, many.min_alpha_norm)
