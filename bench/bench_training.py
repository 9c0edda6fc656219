"""What each training mode costs the model part of a round: train, then build the stream queue.

Usage: ``python -m bench.bench_training [--sizes 1000 10000] [--labels 200 1000] [--repeats 3]``

On the synthetic pools of ``bench.synthetic`` (post-ReLU-like, 1280-D as EfficientNet-Lite0
gives, 10 classes, 200 or 1000 labels) it times, for each mode of ``model.head.TRAINING_MODES`` in
the same process: ``train_head`` with the mode's head (its default epochs, as a round) and
``stream_queue`` drawing a new batch (the dearer kind of round). Reading, embedding and pushing
are the same for every mode and are left out. Medians over ``--repeats`` runs, and the ratio
of each mode to ``head``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.synthetic import make_query_inputs
from model.alfamix.stream import CarriedBatch, StreamConfig, stream_queue
from model.head import TRAINING_MODES, head_config_for, train_head

N_QUERY = 100


def one_round(z_lab: torch.Tensor, y_lab: torch.Tensor, z_unl: torch.Tensor, training: str) -> tuple[float, float]:
    """Seconds to train and to build the queue, once."""
    started = time.perf_counter()
    head = train_head(z_lab, y_lab, 10, head_config_for(training))
    trained = time.perf_counter()
    stream_queue(z_lab, y_lab, z_unl, head, CarriedBatch.empty(), StreamConfig(n_query=N_QUERY))
    return trained - started, time.perf_counter() - trained


def measure(n_unl: int, n_lab: int, dim: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Per mode, the median seconds of training and of the queue; modes alternate within a repeat."""
    inputs = make_query_inputs(n_unl, dim=dim, n_lab=n_lab, random_state=0)
    z_lab, y_lab = torch.from_numpy(inputs["lb_emb"]), torch.from_numpy(inputs["lb_y"]).long()
    z_unl = torch.from_numpy(inputs["ulb_emb"])
    times: dict[str, list[tuple[float, float]]] = {mode: [] for mode in TRAINING_MODES}
    for _ in range(repeats):
        for mode in TRAINING_MODES:
            times[mode].append(one_round(z_lab, y_lab, z_unl, mode))
    return {
        mode: (statistics.median(t for t, _ in runs), statistics.median(q for _, q in runs))
        for mode, runs in times.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_training", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--labels", type=int, nargs="+", default=[200])
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print("| pool | labels | mode | train (s) | queue (s) | train + queue (s) | / head |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for n_unl in args.sizes:
        for n_lab in args.labels:
            figures = measure(n_unl, n_lab, args.dim, args.repeats)
            baseline = sum(figures["head"])
            for mode, (train, queue) in figures.items():
                total = train + queue
                print(
                    f"| {n_unl:,} | {n_lab:,} | {mode} | {train:.2f} | {queue:.2f} | {total:.2f} "
                    f"| {total / baseline:.2f} |"
                )


if __name__ == "__main__":
    main()
