"""Small inputs shared by the ALFA-Mix tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def linear_head(weight: list[list[float]], bias: list[float] | None = None) -> nn.Linear:
    """An nn.Linear with the given (C, D) weight and (C,) bias."""
    w = torch.tensor(weight, dtype=torch.float32)
    head = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        head.weight.copy_(w)
        head.bias.copy_(torch.tensor(bias) if bias is not None else torch.zeros(w.shape[0]))
    return head


def clustered_pool(
    n_unl: int,
    dim: int,
    n_classes: int,
    *,
    dead_dims: int = 0,
    class_dims: int = 0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(z_lab, y_lab, z_unl, y_unl) from overlapping class clusters.

    With ``dead_dims``/``class_dims`` the features are post-ReLU: the first
    ``dead_dims`` units are 0 for every sample, and the next ``class_dims``
    units fire only for one class each (0 for every other class), so anchors
    and samples share exact zeros, as with dead ReLU units.
    """
    generator = torch.Generator().manual_seed(seed)
    n_lab = 10 * n_classes
    means = torch.randn(n_classes, dim, generator=generator, dtype=dtype)
    labels = torch.arange(n_lab + n_unl) % n_classes
    labels = labels[torch.randperm(len(labels), generator=generator)]
    z = means[labels] + 1.5 * torch.randn(len(labels), dim, generator=generator, dtype=dtype)
    if dead_dims or class_dims:
        z = torch.relu(z)
        z[:, :dead_dims] = 0
        for offset in range(class_dims):
            column = dead_dims + offset
            z[labels != offset % n_classes, column] = 0
    return z[:n_lab], labels[:n_lab], z[n_lab:], labels[n_lab:]


def fitted_linear_head(z_lab: torch.Tensor, y_lab: torch.Tensor, n_classes: int, seed: int = 0) -> nn.Linear:
    """A linear head fit by a few hundred full-batch Adam steps."""
    torch.manual_seed(seed)
    head = nn.Linear(z_lab.shape[1], n_classes).to(z_lab.dtype)
    optimiser = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(200):
        optimiser.zero_grad()
        nn.functional.cross_entropy(head(z_lab), y_lab).backward()
        optimiser.step()
    return head.eval()


@pytest.fixture
def boundary_case() -> dict[str, torch.Tensor | nn.Linear]:
    """The hand-worked 2-D case of test_candidates.py (identity head, anchors (2,0) and (0,2))."""
    return {
        "z_lab": torch.tensor([[2.0, 0.0], [0.0, 2.0]]),
        "y_lab": torch.tensor([0, 1]),
        "z_unl": torch.tensor([[1.0, 0.9], [3.0, 0.0], [0.5, 1.0]]),
        "head": linear_head([[1.0, 0.0], [0.0, 1.0]]),
    }
