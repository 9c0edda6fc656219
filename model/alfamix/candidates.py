"""Candidate search: which unlabeled items flip their prediction when mixed with an anchor.

Parvaneh et al., CVPR 2022 (arXiv:2203.07034), section 3. Every anchor is tested
at once, in chunks of rows so memory stays bounded, over the additive cap
schedule; the search stops at the first cap with more than ``n_query`` candidates.

Per item it reports the cap at which it first flipped, the number of anchors
that flip it at that cap, and the norm of its smallest flipping alpha.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from model.alfamix.mixing import (
    ALPHA_DENOMINATOR_EPS,
    closed_form_alpha,
    linear_loss_gradient,
    loss_gradient,
    mix,
)

# The linear fast path applies the reference's d / (d + 1e-8) factor exactly in
# coordinates where some anchor lies within this of zero (dead or nearly dead
# units: there z_u often equals the anchor, d = 0, and the factor is 0). In
# other coordinates it takes the factor as 1: an error of at most 1e-8 / |d|
# of that coordinate's step, below the reference's own float32 rounding unless
# z_u matches a non-zero anchor value to within a few float32 ulps.
NEAR_ANCHOR_TOLERANCE = 1e-3


@dataclass(frozen=True)
class CandidateSearch:
    """Outcome of the flip test over the evaluated caps (all tensors on the input's device)."""

    candidates: torch.Tensor  # (N,) bool
    first_flip_cap: torch.Tensor  # (N,) float32, inf if never flipped
    min_alpha_norm: torch.Tensor  # (N,) float32, inf if never flipped
    flip_count: torch.Tensor  # (N,) int64, anchors that flip the item at its first flip cap
    caps: list[float]  # the caps evaluated, in order


@dataclass(frozen=True)
class NearZeroColumns:
    """Coordinates where some anchor is within NEAR_ANCHOR_TOLERANCE of zero, split by kind."""

    shared: torch.Tensor  # (S,) columns where all anchors have the same value (dead units)
    mixed: torch.Tensor  # (M,) the others

    @classmethod
    def of(cls, anchors: torch.Tensor) -> NearZeroColumns:
        near_zero = anchors.abs().amin(dim=0) < NEAR_ANCHOR_TOLERANCE  # (D,)
        same = (anchors == anchors[0]).all(dim=0)  # (D,)
        return cls(
            shared=(near_zero & same).nonzero(as_tuple=True)[0], mixed=(near_zero & ~same).nonzero(as_tuple=True)[0]
        )


# flip_fn(start, stop, cap) -> (flips (n, K) bool, alpha norms (n, K)) for rows start:stop.
FlipFn = Callable[[int, int, float], tuple[torch.Tensor, torch.Tensor]]


def search_closed_form(
    head: nn.Module,
    z_unl: torch.Tensor,
    anchors: torch.Tensor,
    pseudo_labels: torch.Tensor,
    *,
    n_query: int,
    caps: list[float],
    chunk_size: int,
) -> CandidateSearch:
    """Closed-form ALFA-Mix candidate search, (N, D) pool against (K, D) anchors.

    A linear head takes the fast path (no (N, K, D) tensor); any other head
    mixes explicitly with the reference formula.
    """
    if isinstance(head, nn.Linear):
        return _search_linear(head, z_unl, anchors, pseudo_labels, n_query, caps, chunk_size)

    def flip_fn(start: int, stop: int, cap: float) -> tuple[torch.Tensor, torch.Tensor]:
        z = z_unl[start:stop]  # (n, D)
        labels = pseudo_labels[start:stop]  # (n,)
        grad = loss_gradient(head, z, labels)  # (n, D)
        alpha = closed_form_alpha(z[:, None, :], anchors[None], grad[:, None, :], cap)  # (n, K, D)
        return _flips_of_mixed(head, z, anchors, labels, alpha)

    return scan_caps(len(z_unl), len(anchors), caps, n_query, chunk_size, flip_fn, z_unl.device)


def scan_caps(
    n_items: int,
    n_anchors: int,
    caps: list[float],
    n_query: int,
    chunk_size: int,
    flip_fn: FlipFn,
    device: torch.device,
) -> CandidateSearch:
    """Run ``flip_fn`` cap by cap over all rows, stopping once candidates exceed ``n_query``."""
    never = len(caps)
    first_flip = torch.full((n_items, n_anchors), never, dtype=torch.int64, device=device)  # (N, K)
    min_alpha_norm = torch.full((n_items,), torch.inf, device=device)  # (N,)
    for index, cap in enumerate(caps):
        for start in range(0, n_items, chunk_size):
            stop = min(start + chunk_size, n_items)
            flips, norms = flip_fn(start, stop, cap)  # (n, K), (n, K)
            block = first_flip[start:stop]  # (n, K) view
            block[flips & (block == never)] = index
            flipping_norms = torch.where(flips, norms.float(), torch.inf).amin(dim=1)  # (n,)
            torch.minimum(min_alpha_norm[start:stop], flipping_norms, out=min_alpha_norm[start:stop])
        if int((first_flip.amin(dim=1) < never).sum()) > n_query:
            return summarize_flips(first_flip, min_alpha_norm, caps[: index + 1])
    return summarize_flips(first_flip, min_alpha_norm, caps)


def summarize_flips(first_flip: torch.Tensor, min_alpha_norm: torch.Tensor, caps: list[float]) -> CandidateSearch:
    """Per-item outputs from per-(item, anchor) first-flip cap indices (N, K)."""
    n_caps = len(caps)
    item_first = first_flip.amin(dim=1)  # (N,)
    candidates = item_first < n_caps  # (N,)
    cap_values = torch.tensor([*caps, torch.inf], dtype=torch.float32, device=first_flip.device)
    flip_count = ((first_flip == item_first[:, None]) & candidates[:, None]).sum(dim=1)  # (N,)
    return CandidateSearch(
        candidates=candidates,
        first_flip_cap=cap_values[item_first.clamp(max=n_caps)],
        min_alpha_norm=torch.where(candidates, min_alpha_norm, torch.inf).float(),
        flip_count=flip_count,
        caps=list(caps),
    )


def _flips_of_mixed(
    head: nn.Module,
    z: torch.Tensor,
    anchors: torch.Tensor,
    labels: torch.Tensor,
    alpha: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip test of explicitly mixed points: alpha (n, K, D) -> flips (n, K), norms (n, K)."""
    n, n_anchors, dim = alpha.shape
    mixed = mix(z[:, None, :], anchors[None], alpha)  # (n, K, D)
    predicted = head(mixed.reshape(n * n_anchors, dim)).argmax(dim=1).reshape(n, n_anchors)  # (n, K)
    return predicted != labels[:, None], alpha.norm(dim=2)


def _search_linear(
    head: nn.Linear,
    z_unl: torch.Tensor,
    anchors: torch.Tensor,
    pseudo_labels: torch.Tensor,
    n_query: int,
    caps: list[float],
    chunk_size: int,
) -> CandidateSearch:
    """Fast path for a linear head.

    With the closed-form alpha, z~ - z_u = alpha * d = c_k * g * d / (d + 1e-8)
    with c_k = eps' * ||d_k|| / ||g||: every anchor moves z_u along g, only by
    a different step. So the mixed logits are logits + c_k * W g, corrected
    exactly on the few coordinates where d is tiny (dead units), where the
    reference's 1e-8 leaves z_u unmoved. Caps only rescale c_k: all caps cost one pass.
    """
    n_items, n_anchors, n_caps = len(z_unl), len(anchors), len(caps)
    cap_values = torch.tensor(caps, dtype=z_unl.dtype, device=z_unl.device)  # (T,)
    columns = NearZeroColumns.of(anchors)
    first_flip = torch.full((n_items, n_anchors), n_caps, dtype=torch.int64, device=z_unl.device)
    for start in range(0, n_items, chunk_size):
        stop = min(start + chunk_size, n_items)
        z = z_unl[start:stop]  # (n, D)
        labels = pseudo_labels[start:stop]  # (n,)
        logits, direction, unit_step = _linear_mixing_terms(head, z, labels, anchors, columns)
        # (T, n, K, C): mixed logits at every cap for every anchor.
        mixed = logits[None, :, None, :] + (cap_values[:, None, None] * unit_step)[..., None] * direction
        flips = mixed.argmax(dim=3) != labels[None, :, None]  # (T, n, K)
        # First cap index that flips each (item, anchor); n_caps where none does.
        flips_with_sentinel = torch.cat([flips, flips.new_ones(1, *flips.shape[1:])])  # (T+1, n, K)
        first_flip[start:stop] = flips_with_sentinel.int().argmax(dim=0)
    stop_index = _stop_index(first_flip.amin(dim=1), n_query, n_caps)
    evaluated = caps[: stop_index + 1]
    first_flip[first_flip > stop_index] = len(evaluated)  # flips past the stop were never evaluated
    norms = _linear_min_alpha_norm(head, z_unl, pseudo_labels, anchors, first_flip, evaluated, chunk_size)
    return summarize_flips(first_flip, norms, evaluated)


def _linear_mixing_terms(
    head: nn.Linear,
    z: torch.Tensor,
    labels: torch.Tensor,
    anchors: torch.Tensor,
    columns: NearZeroColumns,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits (n, C), logit direction per anchor (n, K, C), and step per unit cap (n, K)."""
    logits = head(z)  # (n, C)
    grad = linear_loss_gradient(head.weight, logits, labels)  # (n, D)
    grad_norm = grad.norm(dim=1)  # (n,)
    distances = _anchor_distances(z, anchors)  # (n, K)
    # A zero gradient means no direction to move in: the item cannot flip.
    unit_step = torch.where(
        grad_norm[:, None] > 0,
        distances / grad_norm.clamp(min=torch.finfo(grad.dtype).tiny)[:, None] / z.shape[1] ** 0.5,
        0.0,
    )  # (n, K)
    correction = _apply_near_zero_factor(z, grad, anchors, columns, head.weight)  # grad is updated in place
    direction = (grad @ head.weight.T)[:, None, :] - correction  # (n, K, C)
    return logits, direction, unit_step


def _anchor_distances(z: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """||anchor_k - z_u|| for all pairs, (n, K), through one matrix product.

    Both sides are centred on the anchors' mean first, so the expansion
    ||z||^2 - 2 z.a + ||a||^2 does not lose precision to large norms.
    """
    centre = anchors.mean(dim=0)  # (D,)
    z_c, a_c = z - centre, anchors - centre  # (n, D), (K, D)
    squared = torch.addmm((z_c * z_c).sum(1, keepdim=True) + (a_c * a_c).sum(1), z_c, a_c.T, alpha=-2)  # (n, K)
    return squared.clamp_(min=0).sqrt_()


def _apply_near_zero_factor(
    z: torch.Tensor,
    grad: torch.Tensor,
    anchors: torch.Tensor,
    columns: NearZeroColumns,
    weight: torch.Tensor,
) -> torch.Tensor:
    """Apply the reference's d / (d + 1e-8) factor, exactly, in the near-zero columns.

    In ``columns.shared`` every anchor has the same value, so the factor is one
    per item: it is applied to ``grad`` (n, D) in place. In ``columns.mixed`` it
    differs per anchor: returned is the part of the shortcut's W g that the
    reference does not take there, W (g * 1e-8 / (d + 1e-8)), (n, K, C).
    """
    if len(columns.shared):
        diff = anchors[0, columns.shared] - z[:, columns.shared]  # (n, S)
        grad[:, columns.shared] *= diff / (diff + ALPHA_DENOMINATOR_EPS)
    if not len(columns.mixed):
        return z.new_zeros(1, 1, 1)
    diff = anchors[None, :, columns.mixed] - z[:, None, columns.mixed]  # (n, K, M)
    excess = grad[:, None, columns.mixed] * (ALPHA_DENOMINATOR_EPS / (diff + ALPHA_DENOMINATOR_EPS))  # (n, K, M)
    return excess @ weight[:, columns.mixed].T  # (n, K, C)


def _linear_min_alpha_norm(
    head: nn.Linear,
    z_unl: torch.Tensor,
    pseudo_labels: torch.Tensor,
    anchors: torch.Tensor,
    first_flip: torch.Tensor,
    caps: list[float],
    chunk_size: int,
) -> torch.Tensor:
    """Smallest ||alpha|| over flipping (anchor, cap) pairs, (N,); inf for non-candidates.

    For one anchor alpha grows linearly with the cap, so its smallest flipping
    alpha is the one at the first cap that flips it. Computed for candidates only.
    """
    n_caps = len(caps)
    result = torch.full((len(z_unl),), torch.inf, device=z_unl.device)  # (N,)
    rows = (first_flip.amin(dim=1) < n_caps).nonzero(as_tuple=True)[0]  # (M,)
    cap_values = torch.tensor([*caps, 0.0], dtype=z_unl.dtype, device=z_unl.device)  # (T+1,)
    for start in range(0, len(rows), chunk_size):
        r = rows[start : start + chunk_size]
        z, flips = z_unl[r], first_flip[r]  # (m, D), (m, K)
        grad = loss_gradient(head, z, pseudo_labels[r])  # (m, D)
        # ||alpha|| at cap 1 = ||d|| / ||g|| / sqrt(D) * ||g / (d + 1e-8)||, built in place.
        ratio = anchors[None] - z[:, None, :]  # (m, K, D), d for now
        distances = torch.linalg.vector_norm(ratio, dim=2)  # (m, K)
        torch.div(grad[:, None, :], ratio.add_(ALPHA_DENOMINATOR_EPS), out=ratio)
        grad_norm = torch.linalg.vector_norm(grad, dim=1, keepdim=True)  # (m, 1)
        unit_norms = distances / grad_norm / z.shape[1] ** 0.5 * torch.linalg.vector_norm(ratio, dim=2)  # (m, K)
        result[r] = torch.where(flips < n_caps, cap_values[flips] * unit_norms, torch.inf).amin(dim=1).float()
    return result


def _stop_index(item_first_flip: torch.Tensor, n_query: int, n_caps: int) -> int:
    """Index of the first cap at which the accumulated candidates exceed n_query (else the last)."""
    per_cap = torch.bincount(item_first_flip, minlength=n_caps + 1)[:n_caps]  # (T,)
    exceeded = (per_cap.cumsum(0) > n_query).nonzero()
    return int(exceeded[0]) if len(exceeded) else n_caps - 1
