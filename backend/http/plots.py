"""The learning curve as a PNG, drawn on the server (matplotlib loads with the first plot)."""

from __future__ import annotations

import io
from collections.abc import Sequence

from backend.state.learning_curve import CurvePoint


def plot_png(points: Sequence[CurvePoint], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # no display on a server
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    if points:
        x = [p.n_labels for p in points]
        axes.fill_between(x, [p.low for p in points], [p.high for p in points], alpha=0.25, label="95% interval")
        axes.plot(x, [p.accuracy for p in points], marker="o", label="pre-label accuracy")
        axes.legend(loc="lower right")
    else:
        axes.text(0.5, 0.5, "no pre-labels judged yet", ha="center", va="center", transform=axes.transAxes)
    axes.set(xlabel="labels the model was trained on", ylabel="accuracy", ylim=(0, 1), title=title)
    axes.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
