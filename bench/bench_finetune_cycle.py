"""What one fine-tuning costs the service (ALFAMIX_TRAINING=finetune), at 1k and 10k tasks.

Usage: ``python -m bench.bench_finetune_cycle --tasks 1000 10000 --labels 100 [--repeats 1]``

Per size N, with the real job functions (backend/pipeline/jobs.py), the real encoder
(EfficientNet-Lite0, pretrained, on this machine's device) and real PNG images (MNIST digits
28x28, read through LOCAL_FILES_DOCUMENT_ROOT, decoded and preprocessed as in production;
task i shows digit i mod 1,000):
1. embed jobs fill the pretrained space; a round runs on ``--labels`` labels (the true classes);
2. the fine-tune job tunes the last block on those labels (**fine-tune seconds**);
3. embed jobs re-embed the pool in the tuned space (**re-embed seconds**, images per second);
4. a round runs in the tuned space.
Label Studio is an in-memory stand-in here: a round's requests to Label Studio are the same
in every training mode (bench/bench_scale.py times them against the real server). Each round's
stage seconds come from its record. Results go to bench/out/finetune_cycle.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from backend.labelstudio.media import MediaFetcher
from backend.pipeline import jobs
from backend.pipeline.context import Context
from backend.settings import Settings
from devtools.images import write_mnist_pngs
from devtools.project import DIGITS

logger = logging.getLogger(__name__)

JSON_PATH = Path(__file__).resolve().parent / "out" / "finetune_cycle.json"
N_IMAGES = 1000
PROJECT = 1


class InMemoryLabelStudio:
    """The calls a job makes, answered from memory: tasks 1..N, the first ``n_labels`` labeled."""

    def __init__(self, n_tasks: int, truth: list[int], n_labels: int) -> None:
        self.n_tasks, self.truth, self.n_labels = n_tasks, truth, n_labels

    def get_project(self, project_id: int) -> dict[str, Any]:
        choices = "".join(f'<Choice value="{d}"/>' for d in DIGITS)
        config = (
            f'<View><Image name="image" value="$image"/><Choices name="label" toName="image">{choices}</Choices></View>'
        )
        return {"id": project_id, "label_config": config, "task_number": self.n_tasks,
                "total_annotations_number": self.n_labels}  # fmt: skip

    def _task(self, task_id: int) -> dict[str, Any]:
        image = f"/data/local-files/?d=digits/{(task_id - 1) % N_IMAGES}.png"
        annotations = []
        if task_id <= self.n_labels:
            value = {"choices": [DIGITS[self.truth[(task_id - 1) % N_IMAGES]]]}
            result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": value}]
            annotations = [
                {"id": task_id, "result": result, "was_cancelled": False, "updated_at": "2026-12-01T00:00:00Z"}
            ]
        return {"id": task_id, "data": {"image": image}, "annotations": annotations}

    def iter_tasks(self, project_id: int, with_annotations: bool = True) -> list[dict[str, Any]]:
        return [self._task(t) for t in range(1, self.n_tasks + 1)]

    def iter_labeled_tasks(self, project_id: int) -> list[dict[str, Any]]:
        return [self._task(t) for t in range(1, self.n_labels + 1)]

    def import_predictions(self, project_id: int, predictions: list[dict[str, Any]]) -> int:
        return len(predictions)

    def serve_model_version(self, project_id: int, model_version: str) -> None:
        pass


def embed_all(context: Context) -> tuple[float, int]:
    """Embed jobs until none asks for more: (seconds, tasks embedded)."""
    started, embedded = time.perf_counter(), 0
    while True:
        result = jobs.embed_job(context, PROJECT)
        embedded += result["n_embedded"]
        if not result["more"]:
            return time.perf_counter() - started, embedded


def stage_seconds(record: dict[str, Any]) -> dict[str, float]:
    return {part: record[f"{part}_seconds"] for part in ("read", "embed", "train", "query")}


def measure(n_tasks: int, n_labels: int, images: Path, truth: list[int], model_dir: Path) -> dict[str, Any]:
    settings = Settings(
        model_dir=model_dir,
        training="finetune",
        finetune_every=n_labels,
        local_files_document_root=images.parent,
        write_pause=0.0,
    )
    fetcher = MediaFetcher(httpx.Client(), "http://127.0.0.1:9", None, settings.max_image_bytes, images.parent)
    context = Context(settings, InMemoryLabelStudio(n_tasks, truth, n_labels), fetcher)  # type: ignore[arg-type]
    base_seconds, base_embedded = embed_all(context)
    before = jobs.round_job(context, PROJECT)
    assert before["finetune_due"] and before["encoder_version"] is None, before
    started = time.perf_counter()
    tuned = jobs.finetune_job(context, PROJECT)
    finetune_seconds = time.perf_counter() - started
    reembed_seconds, reembedded = embed_all(context)
    after = jobs.round_job(context, PROJECT)
    assert after["encoder_version"] == tuned["encoder_version"] and reembedded == n_tasks, (after, reembedded)
    return {
        "n_tasks": n_tasks,
        "n_labels": n_labels,
        "base_embed_seconds": base_seconds,
        "base_images_per_second": base_embedded / base_seconds,
        "finetune_seconds": finetune_seconds,
        "reembed_seconds": reembed_seconds,
        "reembed_images_per_second": reembedded / reembed_seconds,
        "round_before": stage_seconds(before),
        "round_after": stage_seconds(after),
        "device": before["device"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=JSON_PATH)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        written = write_mnist_pngs(Path(tmp) / "digits", N_IMAGES, random_state=0)
        for index, (path, _) in enumerate(written):  # task i shows file i.png
            path.rename(path.parent / f"{index}.png")
        truth = [label for _, label in written]
        for n_tasks in args.tasks:
            for repeat in range(args.repeats):
                result = measure(
                    n_tasks, args.labels, Path(tmp) / "digits", truth, Path(tmp) / f"model-{n_tasks}-{repeat}"
                )
                print(json.dumps(result), flush=True)
                results.append(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print("| tasks | labels | fine-tune s | re-embed s (images/s) | round before: train + query s | after |")
    print("|---|---|---|---|---|---|")
    for n_tasks in args.tasks:
        rows = [r for r in results if r["n_tasks"] == n_tasks]

        def median(key: str, rows: list[dict[str, Any]] = rows) -> float:
            return statistics.median(r[key] for r in rows)

        def model_part(which: str, rows: list[dict[str, Any]] = rows) -> float:
            return statistics.median(r[which]["train"] + r[which]["query"] for r in rows)

        reembed = f"{median('reembed_seconds'):.0f} ({median('reembed_images_per_second'):.0f})"
        print(
            f"| {n_tasks:,} | {args.labels} | {median('finetune_seconds'):.1f} | {reembed} "
            f"| {model_part('round_before'):.2f} | {model_part('round_after'):.2f} |"
        )


if __name__ == "__main__":
    main()
