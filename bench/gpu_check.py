"""GPU figures in one short run: embedding throughput and ALFA-Mix scoring on the card.

Usage on a CUDA machine: ``python -m bench.gpu_check`` (about two minutes); prints one
JSON object and a Markdown table to paste into docs/benchmarks.md with the card's name.
``--device cpu --quick`` runs the same code small on a CPU, so the script is tested here.

1. Embedding, end to end (PIL images -> preprocessing on the CPU -> encoder -> CPU
   embeddings, as a round does) and encoder-only (batches already on the device), for
   EfficientNet-Lite0 and ResNet-50 (random weights: the speed is the same, and the
   machine needs no download), at batch 64 and 256, fp16 autocast and fp32.
2. One ALFA-Mix query (closed form, n_query=100) over 20,000 and 100,000 synthetic
   embeddings, on the device.
3. Fine-tuning the last block (model/finetune.py, 10 epochs, batch 32) on 1,000 labeled
   images: seconds and peak GPU memory, per encoder; and under a cap of 1% of the card's
   memory, whether it stops with torch's OutOfMemoryError, the error the backend turns into
   an out-of-memory attempt.
Each figure is the median of ``--repeats`` timed runs after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from PIL import Image

from bench.synthetic import make_query_inputs
from model.alfamix.query import QueryConfig, query
from model.backbone import Encoder, build_encoder
from model.embedding import embed_images
from model.finetune import FinetuneConfig, finetune_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test on a CPU")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here; use --device cpu --quick for a smoke run")
    results = {
        "device": _device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "embedding": embedding_figures(device, args.repeats, args.quick),
        "query": query_figures(device, args.repeats, args.quick),
        "finetune": finetune_figures(device, args.quick),
    }
    print(json.dumps(results, indent=1))
    print(markdown(results))


def embedding_figures(device: torch.device, repeats: int, quick: bool) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    n_images = 16 if quick else 1024
    images = [Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)) for _ in range(n_images)]
    rows = []
    for name, weights in (("efficientnet_lite0", "DEFAULT"), ("resnet50", None)):
        encoder = build_encoder(name, weights)
        encoder.module.to(device)
        for batch_size in (8,) if quick else (64, 256):
            batch = torch.randn(batch_size, 3, 224, 224, device=device)
            for fp16 in (True, False):
                end_to_end = partial(
                    embed_images, encoder, images, device=device, batch_size=batch_size, mixed_precision=fp16
                )
                encoder_only = partial(_encoder_forward, encoder.module, batch, fp16 and device.type == "cuda")
                rows.append(
                    {
                        "encoder": name,
                        "batch": batch_size,
                        "precision": "fp16" if fp16 else "fp32",
                        "images_per_s_end_to_end": round(n_images / _median_seconds(end_to_end, device, repeats)),
                        "images_per_s_encoder_only": round(batch_size / _median_seconds(encoder_only, device, repeats)),
                    }
                )
    return rows


def query_figures(device: torch.device, repeats: int, quick: bool) -> list[dict[str, object]]:
    rows = []
    for n_unl in (2_000,) if quick else (20_000, 100_000):
        inputs = make_query_inputs(n_unl, dim=1280, random_state=0)
        z_lab, y_lab, z_unl = (torch.from_numpy(inputs[k]).to(device) for k in ("lb_emb", "lb_y", "ulb_emb"))
        head = torch.nn.Linear(z_unl.shape[1], int(inputs["head_w"].shape[0])).to(device)
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(inputs["head_w"]))
            head.bias.copy_(torch.from_numpy(inputs["head_b"]))
        run = partial(query, z_lab, y_lab.long(), z_unl, head, QueryConfig(n_query=100))
        seconds = _median_seconds(run, device, repeats)
        rows.append({"pool": n_unl, "dim": 1280, "query_seconds": round(seconds, 4)})
    return rows


def finetune_figures(device: torch.device, quick: bool) -> list[dict[str, object]]:
    n_images, epochs = (16, 1) if quick else (1000, 10)
    x = torch.randn(n_images, 3, 224, 224)  # (L, 3, 224, 224)
    y = torch.arange(n_images) % 10  # (L,)
    batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, n_images, 64)]
    rows = []
    for name, weights in (("efficientnet_lite0", "DEFAULT"), ("resnet50", None)):
        encoder = build_encoder(name, weights)
        config = FinetuneConfig(epochs=epochs)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        finetune_encoder(encoder, batches, 10, config, device)
        _synchronize(device)
        seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        rows.append(
            {"encoder": name, "labeled_images": n_images, "epochs": epochs, "seconds": round(seconds, 2),
             "peak_gib": round(peak, 2) if peak is not None else None,
             "out_of_memory_at_1_percent": _runs_out_of_memory(encoder, batches, config, device)}
        )  # fmt: skip
    return rows


def _runs_out_of_memory(
    encoder: Encoder, batches: list[tuple[torch.Tensor, torch.Tensor]], config: FinetuneConfig, device: torch.device
) -> bool | None:
    """None on a CPU, which has no cap to set."""
    if device.type != "cuda":
        return None
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(0.01, device)
    try:
        finetune_encoder(encoder, batches, 10, config, device)
        return False
    except torch.cuda.OutOfMemoryError:
        return True
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()


def markdown(results: dict[str, object]) -> str:
    lines = [
        f"Device: {results['device']} (torch {results['torch']}, CUDA {results['cuda']})",
        "",
        "| encoder | batch | precision | images/s end to end | images/s encoder only |",
        "|---|---:|---|---:|---:|",
    ]
    lines += [
        f"| {r['encoder']} | {r['batch']} | {r['precision']} | {r['images_per_s_end_to_end']} | "
        f"{r['images_per_s_encoder_only']} |"
        for r in results["embedding"]
    ]  # type: ignore[attr-defined]
    lines += ["", "| ALFA-Mix query, pool | dim | seconds |", "|---:|---:|---:|"]
    lines += [f"| {r['pool']:,} | {r['dim']} | {r['query_seconds']} |" for r in results["query"]]  # type: ignore[attr-defined]
    lines += [
        "",
        "| fine-tuning, encoder | labeled images | epochs | seconds | peak GiB | out of memory at a 1% cap |",
        "|---|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r['encoder']} | {r['labeled_images']} | {r['epochs']} | {r['seconds']} | {r['peak_gib']} | "
        f"{r['out_of_memory_at_1_percent']} |"
        for r in results["finetune"]
    ]  # type: ignore[attr-defined]
    return "\n".join(lines)


def _encoder_forward(module: torch.nn.Module, batch: torch.Tensor, fp16: bool) -> None:
    with torch.inference_mode(), torch.autocast(batch.device.type, torch.float16, enabled=fp16):
        module(batch)


def _median_seconds(run: Callable[[], object], device: torch.device, repeats: int) -> float:
    run()  # warm-up: cuDNN autotuning, allocator, lazy initialisation
    seconds = []
    for _ in range(repeats):
        _synchronize(device)
        started = time.perf_counter()
        run()
        _synchronize(device)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


if __name__ == "__main__":
    main()
