"""What the stream queue costs a round, against one paper query, in the same process and run.

Usage: ``python -m bench.bench_stream [--sizes 20000 100000] [--repeats 5]``

On the synthetic pools of ``bench.synthetic`` (post-ReLU-like, 512-D, 10 classes, a linear
head fit on 200 labels) it times ``model.alfamix.query.query`` (one paper query: candidates,
k-means batch, order), ``stream_queue`` drawing a new batch, and ``stream_queue`` keeping the
previous batch (most rounds of a stream). Medians over ``--repeats`` runs, and their ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from bench.synthetic import make_query_inputs
from model.alfamix.query import QueryConfig, query
from model.alfamix.stream import CarriedBatch, StreamConfig, stream_queue

N_QUERY = 100


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(n_unl: int, repeats: int) -> dict[str, float]:
    inputs = make_query_inputs(n_unl, random_state=0)
    z_lab, y_lab = torch.from_numpy(inputs["lb_emb"]), torch.from_numpy(inputs["lb_y"]).long()
    z_unl = torch.from_numpy(inputs["ulb_emb"])
    head = nn.Linear(z_unl.shape[1], inputs["head_w"].shape[0])
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(inputs["head_w"]))
        head.bias.copy_(torch.from_numpy(inputs["head_b"]))
    config = StreamConfig(n_query=N_QUERY)
    first = stream_queue(z_lab, y_lab, z_unl, head, CarriedBatch.empty(), config)
    kept = CarriedBatch(members=first.batch[1:], audit=np.zeros(0, dtype=np.int64), kind=first.batch_kind)
    figures = {
        "query": median_seconds(lambda: query(z_lab, y_lab, z_unl, head, QueryConfig(n_query=N_QUERY)), repeats),
        "stream_new_batch": median_seconds(
            lambda: stream_queue(z_lab, y_lab, z_unl, head, CarriedBatch.empty(), config), repeats
        ),
        "stream_kept_batch": median_seconds(lambda: stream_queue(z_lab, y_lab, z_unl, head, kept, config), repeats),
    }
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_stream", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print("| pool | query (s) | stream, new batch (s) | stream, kept batch (s) | new / query | kept / query |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n_unl in args.sizes:
        f = measure(n_unl, args.repeats)
        print(
            f"| {n_unl:,} | {f['query']:.2f} | {f['stream_new_batch']:.2f} | {f['stream_kept_batch']:.2f} "
            f"| {f['stream_new_batch'] / f['query']:.2f} | {f['stream_kept_batch'] / f['query']:.2f} |"
        )


if __name__ == "__main__":
    main()
