"""Classifier heads on frozen embeddings: fit, determinism, class weighting, absent classes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model.errors import ModelInputError
from model.head import PROJECTION_DIM, HeadConfig, head_config_for, mixing_space, predict_proba, project, train_head


def two_gaussians(n_major: int, n_minor: int, dim: int = 8, gap: float = 1.0, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n_major + n_minor, dim, generator=generator)
    z[n_major:, 0] += gap
    y = torch.cat([torch.zeros(n_major, dtype=torch.int64), torch.ones(n_minor, dtype=torch.int64)])
    return z, y


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_head_separates_separable_data_with_large_offset_and_scale(kind) -> None:
    # Raw embeddings far from zero and on a large scale: the folded standardisation must hold.
    z, y = two_gaussians(50, 50, gap=8.0)
    z = z * 300.0 + 5000.0
    head = train_head(z, y, 2, HeadConfig(kind=kind), random_state=0)
    assert (predict_proba(head, z).argmax(dim=1) == y).float().mean().item() == 1.0
    assert isinstance(head, nn.Linear) == (kind == "linear")


def test_same_seed_gives_identical_heads() -> None:
    z, y = two_gaussians(30, 30)
    first = train_head(z, y, 2, HeadConfig(kind="mlp"), random_state=4)
    second = train_head(z, y, 2, HeadConfig(kind="mlp"), random_state=4)
    assert torch.equal(predict_proba(first, z), predict_proba(second, z))


def test_class_weighting_raises_minority_recall() -> None:
    z, y = two_gaussians(380, 20, gap=1.5, seed=1)
    test_z, test_y = two_gaussians(1000, 1000, gap=1.5, seed=2)
    recalls = []
    for balance in (False, True):
        head = train_head(z, y, 2, HeadConfig(balance_classes=balance), random_state=0)
        predicted = predict_proba(head, test_z).argmax(dim=1)
        recalls.append((predicted[test_y == 1] == 1).float().mean().item())
    assert recalls[1] > recalls[0] + 0.2


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_class_without_labels_gets_an_output_that_is_never_predicted(kind) -> None:
    z, y = two_gaussians(20, 20, gap=4.0)
    head = train_head(z, y, 3, HeadConfig(kind=kind), random_state=0)
    far_away = torch.randn(500, 8, generator=torch.Generator().manual_seed(3)) * 3
    probs = predict_proba(head, torch.cat([z, far_away]))
    assert probs.shape == (540, 3)
    assert torch.allclose(probs.sum(dim=1), torch.ones(540))
    assert probs[:, 2].max().item() < 1e-9


def test_predict_proba_on_empty_input() -> None:
    head = train_head(*two_gaussians(5, 5), 2, random_state=0)
    assert predict_proba(head, torch.zeros(0, 8)).shape == (0, 2)


@pytest.mark.parametrize(
    ("z", "y", "n_classes", "message"),
    [
        (torch.zeros(3, 2), torch.tensor([0, 1, 1]), 1, "n_classes=1 should be >= 2"),
        (torch.zeros(0, 2), torch.zeros(0, dtype=torch.int64), 2, r"z_lab shape \(0, 2\) should be \(L, D\)"),
        (torch.zeros(2, 2), torch.tensor([0, 5]), 3, r"y_lab values span \[0, 5\], outside \[0, 2\]"),
        (torch.full((2, 2), float("inf")), torch.tensor([0, 1]), 2, "finite"),
    ],
)
def test_bad_input_raises_named_error(z, y, n_classes, message) -> None:
    with pytest.raises(ModelInputError, match=message):
        train_head(z, y, n_classes)


def test_unit_with_tiny_spread_over_the_labels_gets_no_large_weight() -> None:
    # Unit 1 barely varies over the labels (like a pixel no labeled digit touches, or a
    # near-constant feature): its weight must stay on the scale of the others.
    z, y = two_gaussians(10, 10, gap=4.0)
    z[:, 1] = 1e-5 * torch.randn(20, generator=torch.Generator().manual_seed(1))
    head = train_head(z, y, 2, HeadConfig(l2=0.0), random_state=0)
    assert head.weight[:, 1].abs().max().item() < 2 * head.weight[:, 0].abs().max().item()
    probe = torch.zeros(1, 8)
    probe[0, 1] = 1.0  # an item with ink where no labeled one has any
    assert predict_proba(head, probe).max().item() < 0.99


def test_each_training_mode_trains_its_head_and_an_unknown_one_is_refused() -> None:
    assert head_config_for("head", epochs=7) == HeadConfig(kind="linear", epochs=7)
    assert head_config_for("head") == HeadConfig(kind="linear", epochs=300)
    assert head_config_for("projection") == HeadConfig(kind="mlp", hidden_dim=256, epochs=100) and PROJECTION_DIM == 256
    with pytest.raises(ModelInputError, match="training='full' should be one of head, projection"):
        head_config_for("full")


def test_alfamix_mixes_in_the_input_of_the_last_layer() -> None:
    z, y = two_gaussians(20, 20, gap=4.0)
    linear = train_head(z, y, 2, head_config_for("head"), random_state=0)
    mlp = train_head(z, y, 2, head_config_for("projection"), random_state=0)

    identity, classifier = mixing_space(linear)
    assert isinstance(identity, nn.Identity) and classifier is linear and project(identity, z) is z

    projection, classifier = mixing_space(mlp)
    h = project(projection, z, batch_size=7)  # batched: 40 rows in 6 batches
    assert h.shape == (40, PROJECTION_DIM) and bool((h >= 0).all())  # after the ReLU
    assert classifier is mlp[-1] and not h.requires_grad
    assert torch.allclose(classifier(h), mlp(z), atol=1e-6)
    assert project(projection, z[:0]).shape == (0, PROJECTION_DIM)
