"""Encoders by name: documented dims, offline weights, named errors, RGB preprocessing."""

from __future__ import annotations

import socket
import warnings
from pathlib import Path
from typing import Any, NoReturn

import pytest
import torch
import torchvision
from PIL import Image
from skimage import data
from torchvision.models import ResNet18_Weights
from torchvision.models._api import WeightsEnum

from model.backbone import (
    Encoder,
    build_encoder,
    efficientnet_lite0_imagenet_logits,
    list_encoders,
)
from model.errors import ModelInputError, UnknownEncoderError, WeightsUnavailableError

CAT_CLASSES = {
    281,
    282,
    283,
    284,
    285,
}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967
TRIPOD = 872


def _refuse_network(*args: Any, **kwargs: Any) -> NoReturn:
    raise OSError("network blocked by the test")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _refuse_network)
    monkeypatch.setattr(socket, "create_connection", _refuse_network)


@pytest.fixture
def empty_torch_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    # A cached checkpoint in the real hub dir would hide the download path.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def resnet18_random() -> Encoder:
    return build_encoder("resnet18", weights=None)


def test_list_encoders_names_the_supported_encoders() -> None:
    assert list_encoders() == ["efficientnet_lite0", "resnet18", "resnet50", "vit_b_16"]


@pytest.mark.parametrize(
    ("name", "dim"),
    [
        ("resnet18", 512),
        ("resnet50", 2048),
        ("vit_b_16", 768),
        ("efficientnet_lite0", 1280),
    ],
)
def test_encoder_without_weights_gives_documented_dim(name: str, dim: int) -> None:
    torch.manual_seed(0)
    encoder = build_encoder(name, weights=None)
    batch = torch.rand(2, 3, 224, 224)  # (2, 3, 224, 224)

    with torch.inference_mode():
        z = encoder.module(batch)  # (2, dim)

    assert not encoder.module.training
    assert encoder.name == name
    assert encoder.embedding_dim == dim
    assert z.shape == (2, dim)
    assert z.dtype == torch.float32


def test_unknown_encoder_raises_with_known_names() -> None:
    with pytest.raises(UnknownEncoderError) as info:
        build_encoder("resnet1000")

    assert str(info.value) == (
        "encoder 'resnet1000' is not known; known encoders: efficientnet_lite0, resnet18, resnet50, vit_b_16"
    )


def test_offline_encoder_classifies_photos_with_network_blocked(
    no_network: None,
) -> None:
    encoder = build_encoder("efficientnet_lite0", weights="DEFAULT")
    # camera is a grayscale photo (cameraman on a tripod): also checks the RGB conversion.
    photos = [
        Image.fromarray(data.chelsea()),
        Image.fromarray(data.coffee()),
        Image.fromarray(data.camera()),
    ]
    batch = torch.stack([encoder.preprocess(photo) for photo in photos])  # (3, 3, 224, 224)

    with torch.inference_mode():
        logits = efficientnet_lite0_imagenet_logits(encoder, batch)  # (3, 1000)
    top1 = logits.argmax(dim=1).tolist()

    assert logits.shape == (3, 1000)
    assert top1[0] in CAT_CLASSES
    assert top1[1] == ESPRESSO
    assert top1[2] == TRIPOD


def test_offline_encoder_rejects_other_weights() -> None:
    with pytest.raises(
        ModelInputError,
        match="weights='IMAGENET1K_V1' for encoder 'efficientnet_lite0'",
    ):
        build_encoder("efficientnet_lite0", weights="IMAGENET1K_V1")


def test_torchvision_weights_without_network_raise_weights_unavailable(
    no_network: None, empty_torch_home: Path
) -> None:
    with pytest.raises(WeightsUnavailableError) as info:
        build_encoder("resnet18", weights="DEFAULT")

    message = str(info.value)
    assert "encoder 'resnet18'" in message
    assert "Pre-fetch" in message
    assert "offline encoder 'efficientnet_lite0'" in message
    assert isinstance(info.value.__cause__, OSError)
    assert [p for p in empty_torch_home.rglob("*") if p.is_file()] == []


def test_torchvision_preprocess_comes_from_the_weights_object(
    monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    # Stand-in for the download: the architecture's own random state dict.
    state_dict = torchvision.models.resnet18(weights=None).state_dict()
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, *a, **k: state_dict)
    image = Image.fromarray(data.chelsea())

    encoder = build_encoder("resnet18", weights="IMAGENET1K_V1")

    expected = ResNet18_Weights.IMAGENET1K_V1.transforms()(image)  # (3, 224, 224)
    torch.testing.assert_close(encoder.preprocess(image), expected, rtol=0, atol=0)


def test_unknown_torchvision_weights_name_raises_model_input_error() -> None:
    with pytest.raises(ModelInputError) as info:
        build_encoder("resnet18", weights="IMAGENET22K")

    assert str(info.value) == (
        "weights='IMAGENET22K' is not a weights name of encoder 'resnet18'; known: DEFAULT, IMAGENET1K_V1"
    )


def test_vit_without_weights_preprocesses_to_its_input_size() -> None:
    encoder = build_encoder("vit_b_16", weights=None)

    x = encoder.preprocess(Image.new("RGB", (40, 30)))  # (3, 224, 224)

    assert x.shape == (3, 224, 224)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1", "CMYK"])
def test_preprocess_converts_any_mode_to_rgb(resnet18_random: Encoder, mode: str) -> None:
    image = Image.new(mode, (300, 260))

    x = resnet18_random.preprocess(image)  # (3, 224, 224)

    assert x.shape == (3, 224, 224)
    assert x.dtype == torch.float32


def test_palette_image_with_transparency_is_converted_without_warning(
    resnet18_random: Encoder,
) -> None:
    image = Image.new("P", (50, 50))
    # Transparency as bytes is the case where PIL warns on a direct RGB conversion.
    image.info["transparency"] = bytes([0, 255])

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = resnet18_random.preprocess(image)  # (3, 224, 224)

    assert x.shape == (3, 224, 224)


def test_grayscale_pixels_become_three_equal_channels() -> None:
    encoder = build_encoder("efficientnet_lite0", weights=None)
    # 127 is the Lite0 normalisation mean, so a flat 127 image maps to exactly 0.
    image = Image.new("L", (256, 256), color=127)

    x = encoder.preprocess(image)  # (3, 224, 224)

    torch.testing.assert_close(x, torch.zeros(3, 224, 224), rtol=0, atol=1e-6)


def test_imagenet_logits_helper_rejects_other_encoders(
    resnet18_random: Encoder,
) -> None:
    with pytest.raises(ModelInputError, match="only 'efficientnet_lite0' keeps one"):
        efficientnet_lite0_imagenet_logits(resnet18_random, torch.zeros(1, 3, 224, 224))
