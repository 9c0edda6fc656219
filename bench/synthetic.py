"""Synthetic ALFA-Mix query inputs: post-ReLU-like embeddings and a linear head fit on them.

The features mimic a frozen encoder's penultimate layer: non-negative, from
``n_classes`` overlapping Gaussian clusters passed through a ReLU, with
``dim // 8`` units dead (exactly 0 for every sample). Dead units matter for
ALFA-Mix: there ``anchor - z`` is exactly 0, and the reference's ``+ 1e-8`` in
the closed-form alpha leaves such a coordinate unperturbed (ALFAMIX.md, "A
computational note on the closed form"). The head is fit on the labelled rows only, so it is as good (70-85% on the pool
at the defaults) as a head trained on a small labelled set would be.

The pool is generated in fixed-size chunks into one preallocated array, so
N = 1,000,000 x 512 float32 (2 GB) needs about 2 GB plus one 64 MB chunk.
The labelled set and the head depend only on ``dim``, ``n_classes``, ``n_lab``
and ``random_state``, not on ``n_unl``, so pools of different sizes share them.
The dict keys match the CLI's .npz format: ``lb_emb``, ``lb_y``, ``ulb_emb``,
``head_w``, ``head_b``.
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CLI_KEYS = ("lb_emb", "lb_y", "ulb_emb", "head_w", "head_b")

_CHUNK_ROWS = 32_768  # rows per generation chunk; fixed so outputs do not depend on it
# Std of the class means per unit, in noise stds: 0.23 gives ~80% pool accuracy at defaults.
_MEAN_SCALE = 0.23
_UNIT_OFFSET_SCALE = 0.5  # std of a per-unit offset shared by all classes
_HEAD_STEPS = 300
_HEAD_LR = 0.05
_HEAD_WEIGHT_DECAY = 1e-2


def make_query_inputs(
    n_unl: int,
    dim: int = 512,
    n_classes: int = 10,
    n_lab: int = 200,
    random_state: int = 0,
    return_ulb_y: bool = False,
) -> dict[str, np.ndarray]:
    """Build one query's inputs: labelled and pool embeddings and a head fit on the labelled set.

    Labels of the labelled set are balanced (``arange(n_lab) % n_classes``,
    shuffled) so every class has an anchor when ``n_lab >= n_classes``; pool
    labels are uniform. ``return_ulb_y=True`` adds the pool's true labels
    under ``ulb_y`` (not part of the CLI format), to measure the head.

    Returns:
        ``lb_emb`` (L, D) float32, ``lb_y`` (L,) int64, ``ulb_emb`` (N, D)
        float32, ``head_w`` (K, D) float32, ``head_b`` (K,) float32
        [, ``ulb_y`` (N,) int64].
    """
    if n_unl < 1 or n_lab < 1 or dim < 8 or n_classes < 2:
        raise ValueError(f"n_unl={n_unl}, n_lab={n_lab} should be >= 1, dim={dim} >= 8, n_classes={n_classes} >= 2")
    rng = np.random.default_rng(random_state)
    unit_offset = rng.normal(0.0, _UNIT_OFFSET_SCALE, size=dim)  # (D,)
    class_means = rng.normal(0.0, _MEAN_SCALE, size=(n_classes, dim))  # (K, D)
    class_means = (class_means + unit_offset).astype(np.float32)  # (K, D)
    dead_units = np.sort(rng.choice(dim, size=dim // 8, replace=False))  # (D/8,)

    lb_y = rng.permutation(np.arange(n_lab) % n_classes).astype(np.int64)  # (L,)
    lb_emb = np.empty((n_lab, dim), dtype=np.float32)  # (L, D)
    _fill_features(lb_emb, lb_y, class_means, dead_units, rng)

    ulb_y = rng.integers(0, n_classes, size=n_unl, dtype=np.int64)  # (N,)
    ulb_emb = np.empty((n_unl, dim), dtype=np.float32)  # (N, D), the one pool-sized array
    _fill_features(ulb_emb, ulb_y, class_means, dead_units, rng)

    head_w, head_b = _fit_linear_head(lb_emb, lb_y, n_classes, random_state)
    inputs = {
        "lb_emb": lb_emb,
        "lb_y": lb_y,
        "ulb_emb": ulb_emb,
        "head_w": head_w,
        "head_b": head_b,
    }
    if return_ulb_y:
        inputs["ulb_y"] = ulb_y
    return inputs


def head_accuracy(emb: np.ndarray, y: np.ndarray, head_w: np.ndarray, head_b: np.ndarray) -> float:
    """Share of rows where argmax(emb @ head_w.T + head_b) == y, computed in chunks."""
    correct = 0
    for start in range(0, emb.shape[0], _CHUNK_ROWS):
        logits = emb[start : start + _CHUNK_ROWS] @ head_w.T + head_b  # (chunk, K)
        correct += int((logits.argmax(axis=1) == y[start : start + _CHUNK_ROWS]).sum())
    return correct / emb.shape[0]


def save_npz(path: str | Path, inputs: dict[str, np.ndarray]) -> None:
    """Write the CLI keys of ``inputs`` to an uncompressed .npz (other keys are left out)."""
    missing = [key for key in CLI_KEYS if key not in inputs]
    if missing:
        raise ValueError(f"inputs lack the CLI keys {missing}; have {sorted(inputs)}")
    np.savez(path, **{key: inputs[key] for key in CLI_KEYS})


def _fill_features(
    out: np.ndarray,
    y: np.ndarray,
    class_means: np.ndarray,
    dead_units: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Write relu(class_mean[y] + N(0, 1)) into ``out`` chunk by chunk, dead units zeroed."""
    for start in range(0, out.shape[0], _CHUNK_ROWS):
        block = out[start : start + _CHUNK_ROWS]  # (chunk, D), a view into out
        rng.standard_normal(out=block, dtype=np.float32)
        block += class_means[y[start : start + _CHUNK_ROWS]]
        np.maximum(block, 0.0, out=block)
        block[:, dead_units] = 0.0


def _fit_linear_head(
    lb_emb: np.ndarray, lb_y: np.ndarray, n_classes: int, random_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """Full-batch gradient descent on L2-regularised cross-entropy; returns (K, D), (K,)."""
    generator = torch.Generator().manual_seed(random_state)
    z_lab = torch.from_numpy(lb_emb)  # (L, D)
    y_lab = torch.from_numpy(lb_y)  # (L,)
    head = torch.nn.Linear(lb_emb.shape[1], n_classes)
    with torch.no_grad():
        head.weight.normal_(0.0, 0.01, generator=generator)
        head.bias.zero_()
    optimiser = torch.optim.SGD(head.parameters(), lr=_HEAD_LR, weight_decay=_HEAD_WEIGHT_DECAY)
    for _ in range(_HEAD_STEPS):
        optimiser.zero_grad()
        F.cross_entropy(head(z_lab), y_lab).backward()
        optimiser.step()
    return (
        head.weight.detach().numpy().astype(np.float32, copy=True),
        head.bias.detach().numpy().astype(np.float32, copy=True),
    )
