"""Learned-alpha variant: the optimiser step, bounds, determinism and a hand-worked flip."""

from __future__ import annotations

import math

import torch

from model.alfamix.learned import LearnedAlphaConfig, _signed_step, search_learned
from model.alfamix.mixing import cap_schedule, compute_anchors
from tests.model.alfamix.conftest import clustered_pool, fitted_linear_head


def run(head, z_lab, y_lab, z_unl, *, n_query: int, seed: int, config=LearnedAlphaConfig()):
    anchors = compute_anchors(z_lab, y_lab, int(head(z_unl[:1]).shape[1]))
    with torch.no_grad():
        labels = head(z_unl).argmax(dim=1)
    generator = torch.Generator().manual_seed(seed)
    return search_learned(
        head,
        z_unl,
        anchors,
        labels,
        n_query=n_query,
        caps=cap_schedule(0.03125),
        chunk_size=64,
        generator=generator,
        config=config,
    )


def test_signed_step_is_the_first_step_of_a_fresh_adam() -> None:
    torch.manual_seed(0)
    start = torch.rand(4, 3)
    grad = torch.randn(4, 3)
    grad[0, 0] = 0.0
    parameter = start.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([parameter], lr=0.1)
    parameter.grad = grad.clone()
    optimiser.step()
    assert torch.allclose(_signed_step(start, grad, 0.1), parameter.detach(), atol=1e-7)


def test_flip_caps_respect_the_alpha_bound(boundary_case) -> None:
    # With alpha in [1e-8, cap] element-wise, mixing towards an anchor moves each coordinate at most cap of the way.
    # u0 = (1, 0.9) -> (0, 2) flips once 1.1 a_y + a_x > 0.1: impossible at cap 1/32 (max 0.066), reached at 1/16
    # after one signed step (lr 0.1 > cap). u1 = (3, 0) -> (0, 2) needs 3 a_x + 2 a_y > 3: not before cap 0.6.
    # u2 = (0.5, 1) -> (2, 0) needs 1.5 a_x + a_y > 0.5: not before cap 0.2.
    result = run(n_query=10, seed=0, **boundary_case)
    assert result.first_flip_cap[0].item() == 0.0625
    assert result.flip_count[0].item() == 1  # mixing towards its own anchor (2, 0) never flips it
    assert result.first_flip_cap[1].item() >= 0.625
    assert result.first_flip_cap[2].item() >= 0.21875
    assert result.candidates.tolist() == [True, True, True]


def test_smallest_flipping_alpha_is_within_its_cap(boundary_case) -> None:
    result = run(n_query=10, seed=1, **boundary_case)
    upper = result.first_flip_cap * math.sqrt(2)
    assert bool((result.min_alpha_norm <= upper + 1e-6).all())
    assert bool((result.min_alpha_norm >= 1e-8).all())


def test_same_seed_same_candidates_and_norms() -> None:
    z_lab, y_lab, z_unl, _ = clustered_pool(200, 16, 4, seed=2)
    head = fitted_linear_head(z_lab, y_lab, 4)
    first = run(head, z_lab, y_lab, z_unl, n_query=20, seed=7)
    second = run(head, z_lab, y_lab, z_unl, n_query=20, seed=7)
    assert torch.equal(first.candidates, second.candidates)
    assert torch.equal(first.min_alpha_norm, second.min_alpha_norm)
    assert int(first.candidates.sum()) > 20


def test_stops_at_the_first_cap_with_more_than_n_query_candidates() -> None:
    z_lab, y_lab, z_unl, _ = clustered_pool(200, 16, 4, seed=4)
    head = fitted_linear_head(z_lab, y_lab, 4)
    result = run(head, z_lab, y_lab, z_unl, n_query=10, seed=0)
    caps = result.caps
    assert int(result.candidates.sum()) > 10
    before_last = result.first_flip_cap < caps[-1]
    assert int(before_last.sum()) <= 10
