"""Offline scoring: ``python -m model.alfamix score --input IN.npz --output OUT.npz``.

IN.npz holds ``lb_emb`` (L, D) float, ``lb_y`` (L,) int, ``ulb_emb`` (N, D) float,
``head_w`` (K, D) and ``head_b`` (K,) of a linear head. OUT.npz holds the
per-item outputs of ``model.alfamix.query`` (see README). Malformed input
exits with status 2 and one line naming the problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model.alfamix.query import DEFAULT_CAP_STEP, QueryConfig, QueryResult, all_finite, query
from model.embedding import pick_device
from model.errors import ModelInputError

INPUT_KEYS = ("lb_emb", "lb_y", "ulb_emb", "head_w", "head_b")
EXIT_BAD_INPUT = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        device = pick_device(args.device)
        z_lab, y_lab, z_unl, head = load_inputs(args.input, device)
        config = QueryConfig(n_query=args.n_query, mode=args.mode, cap_step=args.cap_step)
        result = query(z_lab, y_lab, z_unl, head, config, random_state=args.seed)
    except ModelInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    save_outputs(args.output, result)
    if args.timing:
        print(json.dumps({key: round(value, 6) for key, value in result.timings.items()}), file=sys.stderr)
    return 0


def load_inputs(path: Path, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, nn.Linear]:
    """Read and check IN.npz; return (z_lab, y_lab, z_unl, linear head) on ``device``."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ModelInputError(f"cannot read {path} as .npz: {error}") from error
    with archive:
        missing = [key for key in INPUT_KEYS if key not in archive.files]
        if missing:
            raise ModelInputError(f"{path} lacks {', '.join(missing)} (needs {', '.join(INPUT_KEYS)})")
        arrays = {key: archive[key] for key in INPUT_KEYS}
    floats = {}
    for key in ("lb_emb", "ulb_emb", "head_w", "head_b"):
        if not np.issubdtype(arrays[key].dtype, np.number):
            raise ModelInputError(f"{key} has dtype {arrays[key].dtype}, expected numbers")
        floats[key] = torch.from_numpy(np.atleast_1d(arrays[key]).astype(np.float32, copy=False))
        if not all_finite(floats[key]):
            raise ModelInputError(f"{key} contains NaN or inf")
    if not np.issubdtype(arrays["lb_y"].dtype, np.integer):
        raise ModelInputError(f"lb_y has dtype {arrays['lb_y'].dtype}, expected integers")
    weight, bias = floats["head_w"], floats["head_b"]
    dim = floats["ulb_emb"].shape[1] if floats["ulb_emb"].ndim == 2 else -1
    if weight.ndim != 2 or weight.shape[1] != dim:
        raise ModelInputError(f"head_w shape {tuple(weight.shape)} should be (K, D) with D={dim} like ulb_emb")
    if bias.shape != (weight.shape[0],):
        raise ModelInputError(f"head_b shape {tuple(bias.shape)} should be ({weight.shape[0]},)")
    head = nn.Linear(weight.shape[1], weight.shape[0]).to(device)
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    y_lab = torch.from_numpy(arrays["lb_y"].astype(np.int64, copy=False))
    return floats["lb_emb"].to(device), y_lab.to(device), floats["ulb_emb"].to(device), head


def save_outputs(path: Path, result: QueryResult) -> None:
    """Write OUT.npz with the per-item outputs (see the module docstring)."""
    np.savez(
        path,
        candidates=result.candidates,
        selected=result.selected,
        order=result.order,
        score=result.score,
        cluster=result.cluster,
        first_flip_cap=result.first_flip_cap,
        min_alpha_norm=result.min_alpha_norm,
        flip_count=result.flip_count,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model.alfamix", description="ALFA-Mix offline tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="score an unlabeled pool and write the queue")
    score.add_argument("--input", type=Path, required=True, help="IN.npz (lb_emb, lb_y, ulb_emb, head_w, head_b)")
    score.add_argument("--output", type=Path, required=True, help="OUT.npz to write")
    score.add_argument("--n-query", type=int, default=100, help="batch size of one query (default 100)")
    score.add_argument("--mode", choices=sorted(DEFAULT_CAP_STEP), default="closed_form")
    score.add_argument(
        "--cap-step", type=float, default=None, help="cap schedule step (default 0.2 closed form, 0.03125 learned)"
    )
    score.add_argument("--seed", type=int, default=0, help="random state of k-means and learned alpha")
    score.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    score.add_argument("--timing", action="store_true", help="print per-stage seconds as JSON to stderr")
    return parser
