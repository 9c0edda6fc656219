"""Learned-alpha variant of the candidate search (the reference code's other mode).

Parvaneh et al., CVPR 2022 (arXiv:2203.07034), section 3.2 before the closed
form. For every (item, anchor) pair alpha starts at N(cap/2, cap/2) clamped to
[1e-8, cap] and takes a few signed-gradient steps that raise the cross-entropy
to the pseudo-label while keeping ||alpha|| small. The flip test runs before
each step. The reference re-creates Adam at every step, so its update is
exactly lr * g / (|g| + 1e-8); that is what ``_signed_step`` applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from model.alfamix.candidates import CandidateSearch, scan_caps
from model.alfamix.mixing import mix

ALPHA_FLOOR = 1e-8
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class LearnedAlphaConfig:
    """Optimiser settings, defaulting to the reference's."""

    n_iterations: int = 5
    learning_rate: float = 0.1
    clf_coef: float = 1.0
    l2_coef: float = 0.01


def search_learned(
    head: nn.Module,
    z_unl: torch.Tensor,
    anchors: torch.Tensor,
    pseudo_labels: torch.Tensor,
    *,
    n_query: int,
    caps: list[float],
    chunk_size: int,
    generator: torch.Generator,
    config: LearnedAlphaConfig = LearnedAlphaConfig(),
) -> CandidateSearch:
    """Learned-alpha candidate search over (N, D) items and (K, D) anchors."""

    def flip_fn(start: int, stop: int, cap: float) -> tuple[torch.Tensor, torch.Tensor]:
        return _learn_alpha(head, z_unl[start:stop], anchors, pseudo_labels[start:stop], cap, generator, config)

    return scan_caps(len(z_unl), len(anchors), caps, n_query, chunk_size, flip_fn, z_unl.device)


def _learn_alpha(
    head: nn.Module,
    z: torch.Tensor,
    anchors: torch.Tensor,
    labels: torch.Tensor,
    cap: float,
    generator: torch.Generator,
    config: LearnedAlphaConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flips (n, K) seen at any tested step, and the smallest flipping ||alpha|| (n, K)."""
    n, n_anchors, dim = len(z), len(anchors), z.shape[1]
    alpha = torch.normal(
        cap / 2, cap / 2, size=(n, n_anchors, dim), generator=generator, device=z.device, dtype=z.dtype
    ).clamp_(ALPHA_FLOOR, cap)  # (n, K, D)
    flipped = torch.zeros(n, n_anchors, dtype=torch.bool, device=z.device)  # (n, K)
    min_norm = torch.full((n, n_anchors), torch.inf, device=z.device, dtype=z.dtype)  # (n, K)
    targets = labels.repeat_interleave(n_anchors)  # (n * K,)
    for step in range(config.n_iterations):
        with torch.enable_grad():
            alpha.requires_grad_(True)
            mixed = mix(z[:, None, :], anchors[None], alpha)  # (n, K, D)
            logits = head(mixed.reshape(n * n_anchors, dim))  # (n * K, C)
            flips = (logits.argmax(dim=1) != targets).reshape(n, n_anchors)  # (n, K)
            norms = alpha.norm(dim=2)  # (n, K)
            flipped |= flips
            min_norm = torch.where(flips, torch.minimum(min_norm, norms.detach()), min_norm)
            if step == config.n_iterations - 1:
                break  # the reference's last step is never tested: skip it
            clf_loss = F.cross_entropy(logits, targets, reduction="none").reshape(n, n_anchors)
            loss = (-config.clf_coef * clf_loss + config.l2_coef * norms).sum()
            (grad,) = torch.autograd.grad(loss, alpha)  # (n, K, D)
        # Two thirds of the steps at the full rate, the rest at a tenth (reference schedule).
        rate = config.learning_rate / (1.0 if step < config.n_iterations * 2 / 3 else 10.0)
        alpha = _signed_step(alpha.detach(), grad, rate).clamp_(ALPHA_FLOOR, cap)
    return flipped, min_norm


def _signed_step(alpha: torch.Tensor, grad: torch.Tensor, rate: float) -> torch.Tensor:
    """The first step of a fresh Adam optimiser: rate * g / (|g| + eps), descending."""
    return alpha - rate * grad / (grad.abs() + ADAM_EPS)
