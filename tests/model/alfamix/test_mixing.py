import math

import pytest
import torch
from torch import nn

from model.alfamix.mixing import cap_schedule, closed_form_alpha, compute_anchors, loss_gradient, mix


def test_anchors_are_class_means_with_overall_mean_for_empty_class() -> None:
    z_lab = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
    anchors = compute_anchors(z_lab, torch.tensor([0, 0, 1]), n_classes=3)
    expected = torch.tensor([[1.0, 0.0], [0.0, 4.0], [2 / 3, 4 / 3]])
    assert torch.allclose(anchors, expected)


def test_linear_gradient_equals_autograd_of_summed_cross_entropy() -> None:
    torch.manual_seed(0)
    head = nn.Linear(5, 3)
    z = torch.randn(7, 5)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    expected_z = z.clone().requires_grad_(True)
    nn.functional.cross_entropy(head(expected_z), labels, reduction="sum").backward()
    assert torch.allclose(loss_gradient(head, z, labels), expected_z.grad, atol=1e-6)


def test_generic_gradient_matches_linear_formula_for_same_map() -> None:
    torch.manual_seed(1)
    linear = nn.Linear(4, 3)
    wrapped = nn.Sequential(linear)
    z, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 2, 1, 0])
    assert torch.allclose(loss_gradient(wrapped, z, labels), loss_gradient(linear, z, labels), atol=1e-6)


def test_closed_form_alpha_hand_value() -> None:
    # eps' = cap / sqrt(2) = 0.1; ||d|| = 5, ||g|| = 1: alpha = 0.5 * g / d = [0.5 / 3, 0].
    alpha = closed_form_alpha(
        torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 0.0]]), cap=0.1 * math.sqrt(2)
    )
    assert alpha.tolist()[0] == pytest.approx([0.5 / 3, 0.0], abs=1e-7)


def test_alpha_is_zero_when_embedding_equals_anchor() -> None:
    z = torch.tensor([[1.0, -2.0, 3.0]])
    alpha = closed_form_alpha(z, z.clone(), torch.tensor([[0.3, 0.1, -0.2]]), cap=1.0)
    assert alpha.tolist() == [[0.0, 0.0, 0.0]]


def test_alpha_is_zero_when_gradient_is_zero() -> None:
    alpha = closed_form_alpha(torch.zeros(1, 2), torch.ones(1, 2), torch.zeros(1, 2), cap=1.0)
    assert alpha.tolist() == [[0.0, 0.0]]


def test_mix_interpolates_element_wise() -> None:
    mixed = mix(torch.tensor([0.0, 10.0]), torch.tensor([1.0, 20.0]), torch.tensor([0.25, 0.5]))
    assert mixed.tolist() == [0.25, 15.0]


def test_cap_schedule_accumulates_like_the_reference() -> None:
    assert cap_schedule(0.2) == [0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
    learned = cap_schedule(0.03125)
    assert len(learned) == 32 and learned[0] == 0.03125 and learned[-1] == 1.0
    assert cap_schedule(1.0) == [1.0]
