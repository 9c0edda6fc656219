"""`python -m backend` and `python -m backend.jobs.worker` refuse invalid settings at start-up, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("module", "env", "message"),
    [
        ("backend", {"PORT": "abc"}, "alfamix-backend: invalid settings: PORT='abc' is not an integer"),
        ("backend", {"BASIC_AUTH_USER": "me"}, "BASIC_AUTH_USER and BASIC_AUTH_PASS must be set together"),
        ("backend", {"ALFAMIX_ENCODER": "alexnet"}, "ALFAMIX_ENCODER='alexnet' must be one of efficientnet_lite0"),
        ("backend.jobs.worker", {}, "alfamix-worker: invalid settings: REDIS_URL is not set"),
        # This machine has no GPU: a worker told to use one refuses to start rather than run on the CPU.
        (
            "backend.jobs.worker",
            {"REDIS_URL": "redis://127.0.0.1:6379/15", "ALFAMIX_DEVICE": "cuda"},
            "alfamix-worker: ALFAMIX_DEVICE=cuda, but torch sees no CUDA device",
        ),
    ],
)
def test_invalid_settings_stop_the_start_with_a_message_naming_the_variable(
    module: str, env: dict[str, str], message: str
) -> None:
    clean = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PORT", "BASIC_AUTH_USER")}
    result = subprocess.run(
        [sys.executable, "-m", module], env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert message in result.stderr
