"""Building blocks of ALFA-Mix: anchors, loss gradient, closed-form alpha, cap schedule.

Parvaneh et al., "Active Learning by Feature Mixing", CVPR 2022 (arXiv:2203.07034).
All functions are pure: they keep tensors on the device they came on.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# The reference adds this to the denominator of the closed-form alpha. It is
# kept exactly: where anchor and sample agree in a coordinate (dead ReLU units)
# it leaves that coordinate unperturbed, which changes decisions.
ALPHA_DENOMINATOR_EPS = 1e-8


def compute_anchors(z_lab: torch.Tensor, y_lab: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Class means of the labeled embeddings, shape (C, D).

    A class without a labeled example gets the mean of all labeled embeddings,
    as in the reference. Example: z_lab = [[0, 0], [2, 0], [0, 4]], y_lab = [0, 0, 1],
    n_classes = 3 gives [[1, 0], [0, 4], [2/3, 4/3]].
    """
    dim = z_lab.shape[1]
    sums = torch.zeros(n_classes, dim, dtype=z_lab.dtype, device=z_lab.device)  # (C, D)
    sums.index_add_(0, y_lab, z_lab)
    counts = torch.bincount(y_lab, minlength=n_classes).to(z_lab.dtype)  # (C,)
    anchors = sums / counts.clamp(min=1).unsqueeze(1)  # (C, D)
    empty = counts == 0
    if bool(empty.any()):
        anchors[empty] = z_lab.mean(dim=0)
    return anchors


def distinct_anchors(anchors: torch.Tensor) -> torch.Tensor:
    """The anchors (C, D) with repeated rows dropped, (K, D) with K <= C, first occurrences in order.

    Classes without a label share one anchor (the labeled mean): mixing towards a repeated
    anchor is the same test, so a flip there would be counted once per unlabeled class.
    Example: rows [a, b, m, m, m] give [a, b, m].
    """
    _, inverse = torch.unique(anchors, dim=0, return_inverse=True)  # (C,)
    first = torch.full((int(inverse.max()) + 1,), len(anchors), dtype=torch.int64, device=anchors.device)
    first.scatter_reduce_(0, inverse, torch.arange(len(anchors), device=anchors.device), reduce="amin")
    return anchors[first.sort().values]


def loss_gradient(head: nn.Module, z_unl: torch.Tensor, pseudo_labels: torch.Tensor) -> torch.Tensor:
    """Gradient of cross-entropy(head(z_u), pseudo_label_u) with respect to each z_u, (N, D).

    Summed (not averaged) over rows: the scale cancels in the closed-form alpha.
    For a linear head this is W^T (softmax(logits) - onehot(y*)), computed without autograd.
    """
    if isinstance(head, nn.Linear):
        with torch.no_grad():
            return linear_loss_gradient(head.weight, head(z_unl), pseudo_labels)
    with torch.enable_grad():
        z = z_unl.detach().requires_grad_(True)  # (N, D)
        loss = F.cross_entropy(head(z), pseudo_labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, z)
    return grad  # (N, D)


def linear_loss_gradient(weight: torch.Tensor, logits: torch.Tensor, pseudo_labels: torch.Tensor) -> torch.Tensor:
    """(softmax(logits) - onehot(y*)) @ W: the gradient for a linear head of weight (C, D), (N, D)."""
    residual = torch.softmax(logits, dim=1)  # (N, C)
    residual[torch.arange(len(residual), device=residual.device), pseudo_labels] -= 1.0
    return residual @ weight  # (N, D)


def closed_form_alpha(z_unl: torch.Tensor, anchor: torch.Tensor, grad: torch.Tensor, cap: float) -> torch.Tensor:
    """The paper's closed-form alpha for mixing z_u with an anchor, (..., D).

    alpha = eps' * ||d|| / ||g|| * g / (d + 1e-8), with d = anchor - z_u and
    eps' = cap / sqrt(D). No clamping, as in the reference. Inputs broadcast over
    leading dimensions, e.g. z (n, 1, D) with anchors (1, K, D). Where g = 0
    (nothing to follow) alpha is 0 rather than the reference's NaN.
    """
    eps = cap / z_unl.shape[-1] ** 0.5
    diff = anchor - z_unl  # (..., D)
    grad_norm = grad.norm(dim=-1, keepdim=True)  # (..., 1)
    scale = eps * diff.norm(dim=-1, keepdim=True) / grad_norm.clamp(min=torch.finfo(grad.dtype).tiny)
    scale = torch.where(grad_norm > 0, scale, 0.0)  # (..., 1)
    return scale * grad / (diff + ALPHA_DENOMINATOR_EPS)  # (..., D)


def mix(z_unl: torch.Tensor, anchor: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """z~ = (1 - alpha) * z_u + alpha * anchor, element-wise."""
    return (1 - alpha) * z_unl + alpha * anchor


def cap_schedule(cap_step: float) -> list[float]:
    """The additive caps step, 2*step, ... the reference evaluates, up to 1.

    Accumulated in floating point exactly as the reference does, so the caps
    (0.2, 0.4, 0.6000000000000001, 0.8, 1.0 for step 0.2) match it bit for bit.
    """
    caps: list[float] = []
    cap = 0.0
    while cap < 1.0:
        cap += cap_step
        caps.append(cap)
    return caps
