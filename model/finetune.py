"""Partial fine-tuning of an encoder: its last blocks, with their norm layers and the layers after
them, learn from the labels; everything before them stays frozen.

The authors of ALFA-Mix (arXiv:2203.07034) retrain their network every round; in their ViT
setting the norm layers and a projection stay trainable. Here an encoder is cut in two,
``encoder.module(x) == tail(prefix(x))``. The prefix is frozen, so the prefix features of the
labeled images are computed once per fine-tuning and every epoch runs the tail only: on the
GPU that is a fraction of a full backward pass, and memory is bounded by ``batch_size``.

Training is linear probing, then fine-tuning (LP-FT, Kumar et al., ICLR 2022): a linear head
is first fitted on the frozen tail's embeddings, so the first steps of fine-tuning follow a
trained head's gradient and do not distort the pretrained features with a random one.
Batch norm keeps its running statistics (the tail runs in eval mode): a batch of a few labels
would give noisy statistics, and the pool is re-embedded with the ones the encoder shipped with.

Example::

    split = split_encoder(encoder, n_blocks=1)
    state = finetune_encoder(encoder, [(x_lab, y_lab)], n_classes=10)  # x_lab: (L, 3, 224, 224)
    tuned = tuned_encoder(encoder, state)  # an Encoder whose last block learned from the labels
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from efficientnet_lite_pytorch import EfficientNet
from torch import nn
from torch.nn import functional as F
from torchvision.models import ResNet, VisionTransformer

from model.backbone import EfficientNetLiteEncoder, Encoder
from model.errors import ModelInputError
from model.head import HeadConfig, class_weights, train_head


@dataclass(frozen=True)
class FinetuneConfig:
    """How to fine-tune. ``n_blocks``: blocks trained, counted from the last one."""

    n_blocks: int = 1
    epochs: int = 10
    batch_size: int = 32  # bounds GPU memory: activations of one batch through the tail
    learning_rate: float = 1e-4  # AdamW, tail and head alike (the head starts trained)
    weight_decay: float = 1e-4


@dataclass(frozen=True)
class EncoderSplit:
    """``module(x) == tail(prefix(x))``; both share their parameters with ``module``.

    ``tail_names``: the tail's submodules as dotted names in ``module``; a tuned encoder's
    weights are the state entries under them.
    """

    prefix: nn.Module
    tail: nn.Module
    tail_names: tuple[str, ...]
    n_blocks_available: int


def split_encoder(encoder: Encoder, n_blocks: int) -> EncoderSplit:
    """Cut ``encoder.module`` before its last ``n_blocks`` blocks (ResNet, ViT or EfficientNet-Lite).

    Raises ModelInputError for another architecture or an ``n_blocks`` it does not have.
    """
    module = encoder.module
    if isinstance(module, EfficientNetLiteEncoder):
        return _split_lite(module.net, n_blocks)
    if isinstance(module, ResNet):
        return _split_resnet(module, n_blocks)
    if isinstance(module, VisionTransformer):
        return _split_vit(module, n_blocks)
    raise ModelInputError(f"encoder {encoder.name!r} ({type(module).__name__}) cannot be fine-tuned in part")


def prefix_features(
    split: EncoderSplit, image_batches: Iterable[torch.Tensor], device: torch.device | str
) -> torch.Tensor:
    """The frozen prefix's output for batches of (b, 3, H, W) images: (N, ...) float32 on the CPU."""
    device = torch.device(device)
    prefix = split.prefix.to(device).eval()
    parts: list[torch.Tensor] = []
    with torch.inference_mode():
        for batch in image_batches:
            parts.append(prefix(batch.to(device)).float().cpu())  # (b, ...)
    if not parts:
        raise ModelInputError("no images to fine-tune on")
    return torch.cat(parts).clone()  # (N, ...), an ordinary tensor outside inference mode


def embed_features(
    tail: nn.Module, features: torch.Tensor, batch_size: int = 256, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Embeddings (N, D) on ``device`` of prefix features (N, ...) through ``tail``, batched, without autograd."""
    with torch.no_grad():
        parts = [
            tail(features[start : start + batch_size].to(device)).float()
            for start in range(0, len(features), batch_size)
        ]
    return torch.cat(parts)  # (N, D)


def finetune_encoder(
    encoder: Encoder,
    labeled_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    n_classes: int,
    config: FinetuneConfig = FinetuneConfig(),
    device: torch.device | str = "cpu",
    random_state: int = 0,
) -> dict[str, torch.Tensor]:
    """Fine-tune a copy of ``encoder``'s last blocks on labeled images; returns their state
    entries (CPU tensors) for :func:`tuned_encoder`. ``encoder`` itself is left unchanged.

    ``labeled_batches`` yields (x, y): preprocessed (b, 3, H, W) images and their (b,) int64
    labels, so that a caller can decode images one batch at a time. A CUDA out-of-memory
    error propagates: the caller decides what to fall back to.
    """
    device = torch.device(device)
    module = copy.deepcopy(encoder.module)
    split = split_encoder(dataclasses.replace(encoder, module=module), config.n_blocks)
    labels: list[torch.Tensor] = []

    def images() -> Iterator[torch.Tensor]:
        for x, y in labeled_batches:
            if y.shape != (len(x),) or y.dtype != torch.int64:
                raise ModelInputError(f"labels should be int64 of shape ({len(x)},), got {y.dtype} {tuple(y.shape)}")
            labels.append(y)
            yield x  # (b, 3, H, W)

    features = prefix_features(split, images(), device)  # (L, ...)
    train_tail(split, features, torch.cat(labels), n_classes, config, device, random_state)
    return tuned_state(module, split)


def train_tail(
    split: EncoderSplit,
    features: torch.Tensor,
    y_lab: torch.Tensor,
    n_classes: int,
    config: FinetuneConfig,
    device: torch.device,
    random_state: int = 0,
) -> None:
    """LP-FT of ``split.tail`` in place on prefix features (L, ...) and labels (L,)."""
    if config.epochs < 0 or config.batch_size < 1:
        raise ModelInputError(f"epochs={config.epochs} should be >= 0 and batch_size={config.batch_size} >= 1")
    tail = split.tail.to(device).eval()  # eval: batch norm keeps its statistics, dropout is off
    y_lab = y_lab.to(device)
    z_lab = embed_features(tail, features, config.batch_size, device)  # (L, D)
    head = train_head(z_lab, y_lab, n_classes, HeadConfig(kind="linear"), random_state)  # the linear probe
    params = [*tail.parameters(), *head.parameters()]
    for param in params:
        param.requires_grad_(True)
    optimiser = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    class_weight = class_weights(y_lab, n_classes)  # (C,)
    generator = torch.Generator().manual_seed(random_state)
    with torch.enable_grad():
        for _ in range(config.epochs):
            for rows in torch.randperm(len(features), generator=generator).split(config.batch_size):
                x = features[rows].to(device)  # (b, ...)
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    logits = head(tail(x)).float()  # (b, C)
                loss = F.cross_entropy(logits, y_lab[rows.to(device)], weight=class_weight)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
    for param in params:
        param.requires_grad_(False)


def tuned_state(module: nn.Module, split: EncoderSplit) -> dict[str, torch.Tensor]:
    """The state entries of ``module`` that belong to the tail, copied to the CPU."""
    prefixes = tuple(f"{name}." for name in split.tail_names)
    return {name: t.detach().cpu().clone() for name, t in module.state_dict().items() if name.startswith(prefixes)}


def tuned_encoder(encoder: Encoder, state: dict[str, torch.Tensor]) -> Encoder:
    """A copy of ``encoder`` with the fine-tuned entries ``state`` loaded, in eval mode."""
    module = copy.deepcopy(encoder.module).cpu()
    unknown = sorted(set(state) - set(module.state_dict()))
    if unknown:
        raise ModelInputError(
            f"{len(unknown)} fine-tuned entries are not in encoder {encoder.name!r}, e.g. {unknown[0]!r}"
        )
    module.load_state_dict(state, strict=False)
    return dataclasses.replace(encoder, module=module.eval())


class _Steps(nn.Module):
    """Runs its steps in order; the steps stay the encoder's own modules."""

    def __init__(self, steps: list[nn.Module]) -> None:
        super().__init__()
        self.steps = nn.ModuleList(steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = step(x)
        return x


class _GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))  # (B, C, H, W) -> (B, C)


class _ConvBnAct(nn.Module):
    """EfficientNet-Lite's stem and head convolution: convolution, batch norm, ReLU6."""

    def __init__(self, conv: nn.Module, bn: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.conv, self.bn, self.act = conv, bn, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class _ViTTokens(nn.Module):
    """Patches, class token and position embedding: the input of the first encoder layer.

    Holds the whole ViT for its ``_process_input``; it only ever sits in a prefix, which never trains.
    """

    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.vit._process_input(x)  # (B, S, D)
        cls = self.vit.class_token.expand(x.shape[0], -1, -1)  # (B, 1, D)
        return self.vit.encoder.dropout(torch.cat([cls, x], dim=1) + self.vit.encoder.pos_embedding)


class _ClassToken(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]  # (B, S + 1, D) -> (B, D)


def _check_blocks(n_blocks: int, available: int) -> None:
    if not 1 <= n_blocks <= available:
        raise ModelInputError(f"n_blocks={n_blocks} should be between 1 and the encoder's {available} blocks")


def _split_lite(net: EfficientNet, n_blocks: int) -> EncoderSplit:
    # Blocks run as in EfficientNet.extract_features; in eval mode drop-connect is off.
    blocks = list(net._blocks)
    _check_blocks(n_blocks, len(blocks))
    cut = len(blocks) - n_blocks
    return EncoderSplit(
        prefix=_Steps([_ConvBnAct(net._conv_stem, net._bn0, net._swish), *blocks[:cut]]),
        tail=_Steps([*blocks[cut:], _ConvBnAct(net._conv_head, net._bn1, net._swish), _GlobalAvgPool()]),
        tail_names=(*(f"net._blocks.{i}" for i in range(cut, len(blocks))), "net._conv_head", "net._bn1"),
        n_blocks_available=len(blocks),
    )


def _split_resnet(resnet: ResNet, n_blocks: int) -> EncoderSplit:
    named = [
        (f"layer{stage}.{i}", block)
        for stage in range(1, 5)
        for i, block in enumerate(getattr(resnet, f"layer{stage}"))
    ]
    _check_blocks(n_blocks, len(named))
    cut = len(named) - n_blocks
    stem = [resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool]
    return EncoderSplit(
        prefix=_Steps([*stem, *(block for _, block in named[:cut])]),
        tail=_Steps([*(block for _, block in named[cut:]), _GlobalAvgPool(), resnet.fc]),
        tail_names=tuple(name for name, _ in named[cut:]),
        n_blocks_available=len(named),
    )


def _split_vit(vit: VisionTransformer, n_blocks: int) -> EncoderSplit:
    layers = list(vit.encoder.layers.named_children())
    _check_blocks(n_blocks, len(layers))
    cut = len(layers) - n_blocks
    return EncoderSplit(
        prefix=_Steps([_ViTTokens(vit), *(layer for _, layer in layers[:cut])]),
        tail=_Steps([*(layer for _, layer in layers[cut:]), vit.encoder.ln, _ClassToken(), vit.heads]),
        tail_names=(*(f"encoder.layers.{name}" for name, _ in layers[cut:]), "encoder.ln"),
        n_blocks_available=len(layers),
    )
