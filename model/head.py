"""Classifier heads trained on frozen-encoder embeddings.

The paper's strongest setting (arXiv:2203.07034, section 4.3) keeps a
self-supervised encoder frozen and trains only a linear or small MLP head on
its features; this module does that training. Embeddings are centred and
divided by one global scale for conditioning, folded into the first linear
layer afterwards, so the returned head takes raw embeddings z and ALFA-Mix can
mix in z space. One scale, not one per unit: with 20 labels a unit's spread
over the labels can be 1000 times smaller than over the pool, and per-unit
standardisation then gives it a huge weight; the loss gradient ALFA-Mix
follows would point along such units and almost every item would flip
(measured: 80% of the pool at the first cap on Fashion-MNIST features).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from model.errors import ModelInputError

HeadKind = Literal["linear", "mlp"]
# What a round trains: "head", a linear head on the frozen embeddings (ALFA-Mix mixes in the
# encoder's space); "projection", a trainable PROJECTION_DIM-d layer with a linear head on top,
# trained together (ALFA-Mix mixes in the projected space, as the authors' code mixes in its
# 256-d embedding layer).
TRAINING_MODES = ("head", "projection")
PROJECTION_DIM = 256
# Full-batch epochs of each mode. A projection has 25 times a linear head's weights (1280 x 256
# against 1280 x 10), and its test accuracy levels off by 50-100 epochs (digits and
# Fashion-MNIST features, 50 and 200 random labels: within 0.4 points of 300).
DEFAULT_EPOCHS = {"head": 300, "projection": 100}
# Logit of a class with no labeled example: e^-30 relative to a logit of 0.
ABSENT_CLASS_LOGIT = -30.0


@dataclass(frozen=True)
class HeadConfig:
    """How to train a head. Full-batch Adam: deterministic for a given seed on one device."""

    kind: HeadKind = "linear"
    hidden_dim: int = 256  # MLP only
    epochs: int = 300
    learning_rate: float = 0.01
    # L2 penalty 0.5 * l2 * ||params||^2 on the summed loss, as logistic regression's 1 / C.
    l2: float = 1.0
    balance_classes: bool = True  # weight each class's loss by 1 / its label count


def train_head(
    z_lab: torch.Tensor,
    y_lab: torch.Tensor,
    n_classes: int,
    config: HeadConfig = HeadConfig(),
    random_state: int = 0,
) -> nn.Module:
    """Fit a head mapping (L, D) embeddings to (L, n_classes) logits, returned in eval mode.

    Classes with no labeled example yet keep their output, switched off: its
    logit is a constant ABSENT_CLASS_LOGIT, so the head never predicts a class
    it has not seen (on far-away inputs a trained-down logit can still win).
    Raises ModelInputError on bad input.
    """
    _validate(z_lab, y_lab, n_classes, config)
    mean = z_lab.mean(dim=0)  # (D,)
    scale = float((z_lab - mean).pow(2).sum(dim=1).mean().sqrt()) or 1.0  # RMS distance to the mean
    z_std = (z_lab - mean) / scale  # (L, D)
    with torch.random.fork_rng(devices=[z_lab.device] if z_lab.device.type == "cuda" else []):
        torch.manual_seed(random_state)
        head = build_head(z_lab.shape[1], n_classes, config).to(z_lab.device)
    class_weight = class_weights(y_lab, n_classes) if config.balance_classes else None
    # Adam's weight_decay adds wd * w to the gradient of the mean loss: wd = l2 / L matches l2 on the sum.
    weight_decay = config.l2 / len(z_lab)
    weights = [p for name, p in head.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in head.named_parameters() if name.endswith("bias")]
    groups = [{"params": weights, "weight_decay": weight_decay}, {"params": biases, "weight_decay": 0.0}]
    optimiser = torch.optim.Adam(groups, lr=config.learning_rate)  # intercepts unpenalised, as in sklearn
    head.train()
    with torch.enable_grad():
        for _ in range(config.epochs):
            optimiser.zero_grad(set_to_none=True)
            loss = F.cross_entropy(head(z_std), y_lab, weight=class_weight)
            loss.backward()
            optimiser.step()
    _fold_standardisation(head, mean, scale)
    _switch_off_absent_classes(head, y_lab, n_classes)
    return head.eval()


def predict_proba(head: nn.Module, z: torch.Tensor, batch_size: int = 65_536) -> torch.Tensor:
    """Class probabilities (N, C) for embeddings (N, D), batched, without autograd.

    no_grad rather than inference_mode: callers (ALFA-Mix's learned alpha) use the
    result as targets inside autograd, which inference tensors cannot be.
    """
    with torch.no_grad():
        parts = [torch.softmax(head(z[start : start + batch_size]), dim=1) for start in range(0, len(z), batch_size)]
    return torch.cat(parts) if parts else z.new_zeros(0, _n_outputs(head))


def head_config_for(training: str, epochs: int | None = None) -> HeadConfig:
    """The head a training mode trains, for ``epochs`` (None: DEFAULT_EPOCHS of the mode);
    ModelInputError for an unknown mode."""
    if training not in TRAINING_MODES:
        raise ModelInputError(f"training={training!r} should be one of {', '.join(TRAINING_MODES)}")
    epochs = epochs or DEFAULT_EPOCHS[training]
    if training == "head":
        return HeadConfig(kind="linear", epochs=epochs)
    return HeadConfig(kind="mlp", hidden_dim=PROJECTION_DIM, epochs=epochs)


def mixing_space(head: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(projection, classifier): ALFA-Mix mixes in the input of the head's last layer.

    For an ``nn.Sequential`` head ending in a linear layer (the MLP head) the projection is
    every layer before the last; for any other head it is the identity, so ALFA-Mix mixes in
    the encoder's space.
    """
    if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):
        return head[:-1], head[-1]
    return nn.Identity(), head


def project(projection: nn.Module, z: torch.Tensor, batch_size: int = 65_536) -> torch.Tensor:
    """``projection`` applied to (N, D) embeddings, batched, without autograd: (N, P)."""
    if isinstance(projection, nn.Identity):
        return z
    with torch.no_grad():
        parts = [projection(z[start : start + batch_size]) for start in range(0, len(z), batch_size)]
    return torch.cat(parts) if parts else projection(z[:0])


def build_head(dim: int, n_classes: int, config: HeadConfig) -> nn.Module:
    if config.kind == "linear":
        return nn.Linear(dim, n_classes)
    return nn.Sequential(nn.Linear(dim, config.hidden_dim), nn.ReLU(), nn.Linear(config.hidden_dim, n_classes))


def _fold_standardisation(head: nn.Module, mean: torch.Tensor, scale: float) -> None:
    """Rewrite the first layer so head(z) == trained_head((z - mean) / scale)."""
    first = head[0] if isinstance(head, nn.Sequential) else head
    assert isinstance(first, nn.Linear)
    with torch.no_grad():
        first.weight.div_(scale)  # (out, D)
        first.bias.sub_(first.weight @ mean)


def _switch_off_absent_classes(head: nn.Module, y_lab: torch.Tensor, n_classes: int) -> None:
    absent = torch.bincount(y_lab, minlength=n_classes) == 0  # (C,)
    last = _last_layer(head)
    with torch.no_grad():
        last.weight[absent] = 0.0
        last.bias[absent] = ABSENT_CLASS_LOGIT


def class_weights(y_lab: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Balanced weights L / (n_present * count_c); absent classes get 0 (they have no loss term)."""
    counts = torch.bincount(y_lab, minlength=n_classes).float()  # (C,)
    present = counts > 0
    weights = torch.zeros(n_classes, device=y_lab.device)
    weights[present] = len(y_lab) / (int(present.sum()) * counts[present])
    return weights


def _n_outputs(head: nn.Module) -> int:
    return _last_layer(head).out_features


def _last_layer(head: nn.Module) -> nn.Linear:
    last = head[-1] if isinstance(head, nn.Sequential) else head
    assert isinstance(last, nn.Linear)
    return last


def _validate(z_lab: torch.Tensor, y_lab: torch.Tensor, n_classes: int, config: HeadConfig) -> None:
    if config.kind not in ("linear", "mlp"):
        raise ModelInputError(f"head kind={config.kind!r} should be 'linear' or 'mlp'")
    if n_classes < 2:
        raise ModelInputError(f"n_classes={n_classes} should be >= 2")
    if z_lab.ndim != 2 or len(z_lab) == 0:
        raise ModelInputError(f"z_lab shape {tuple(z_lab.shape)} should be (L, D) with L >= 1")
    if not z_lab.is_floating_point() or not bool(torch.isfinite(z_lab).all()):
        raise ModelInputError("z_lab should be finite floating-point values")
    if y_lab.shape != (len(z_lab),) or y_lab.dtype != torch.int64:
        raise ModelInputError(f"y_lab should be int64 of shape ({len(z_lab)},), got {y_lab.dtype} {tuple(y_lab.shape)}")
    low, high = int(y_lab.min()), int(y_lab.max())
    if low < 0 or high >= n_classes:
        raise ModelInputError(f"y_lab values span [{low}, {high}], outside [0, {n_classes - 1}]")
