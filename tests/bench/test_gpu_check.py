"""The GPU check runs end to end (small, on the CPU here) and reports every figure it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_gpu_check_smoke_run_reports_embedding_query_and_finetune_figures() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--device", "cpu", "--quick", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures, end = json.JSONDecoder().raw_decode(result.stdout)
    assert figures["device"] == "CPU"
    rows = figures["embedding"]
    assert {(r["encoder"], r["precision"]) for r in rows} == {
        (e, p) for e in ("efficientnet_lite0", "resnet50") for p in ("fp16", "fp32")
    }
    assert all(r["images_per_s_end_to_end"] > 0 and r["images_per_s_encoder_only"] > 0 for r in rows)
    assert figures["query"][0]["pool"] == 2000 and figures["query"][0]["query_seconds"] > 0
    assert "| efficientnet_lite0 | 8 | fp16 |" in result.stdout[end:]
    tuned = figures["finetune"]
    assert [(r["encoder"], r["labeled_images"], r["epochs"]) for r in tuned] == [
        ("efficientnet_lite0", 16, 1),
        ("resnet50", 16, 1),
    ]
    assert all(r["seconds"] > 0 and r["peak_gib"] is None and r["out_of_memory_at_1_percent"] is None for r in tuned)
    assert "| resnet50 | 16 | 1 |" in result.stdout[end:]


def test_gpu_check_refuses_to_run_without_cuda_when_asked_for_it() -> None:
    hidden = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine that has one
    result = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check"], capture_output=True, text=True, timeout=120, check=False, env=hidden
    )
    assert result.returncode == 1
    assert "gpu_check: no CUDA device here" in result.stderr
