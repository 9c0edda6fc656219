"""The learning-curve plot the status page shows."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from backend.http.plots import plot_png
from backend.state.learning_curve import CurvePoint


def point(n_labels: int, accuracy: float) -> CurvePoint:
    return CurvePoint(n_labels, f"v{n_labels}", 20, accuracy, accuracy - 0.1, accuracy + 0.1)


@pytest.mark.parametrize("points", [[], [point(10, 0.5), point(20, 0.7)]])
def test_plot_is_a_640_by_360_png(points: list[CurvePoint]) -> None:
    image = Image.open(io.BytesIO(plot_png(points, "project 1")))
    assert image.format == "PNG" and image.size == (640, 360)
