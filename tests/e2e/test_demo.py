"""The newcomer's demo sets everything up, and a second run reuses it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from devtools.label_studio import REPO_ROOT, free_port


def run_demo(root: Path, ls_port: int, backend_port: int) -> tuple[str, str]:
    """Its stdout (what a newcomer reads) and its log (stderr)."""
    command = [
        sys.executable,
        "-m",
        "demo",
        "--root",
        str(root),
        "--label-studio-port",
        str(ls_port),
        "--backend-port",
        str(backend_port),
        "--tasks",
        "30",
        "--once",
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, result.stderr


def live_version(log: str) -> str:
    found = re.findall(r"^queue live: (\S+)$", log, flags=re.MULTILINE)
    assert len(found) == 1, log[-2000:]
    return str(found[0])


def test_demo_runs_twice_on_the_same_data(tmp_path: Path) -> None:
    ls_port, backend_port = free_port(), free_port()
    first, first_log = run_demo(tmp_path, ls_port, backend_port)
    assert f"Label Studio  http://127.0.0.1:{ls_port}" in first and "log in as demo@example.com" in first
    assert f"Backend       http://127.0.0.1:{backend_port}/projects/1" in first
    # The demo prints once the first queue is live, so --once stops after the backend saved it.
    assert live_version(first_log).startswith("alfamix-1-")
    second, second_log = run_demo(tmp_path, ls_port, backend_port)
    assert "/projects/1 " in second and "/projects/2" not in second  # the same project, not a new one
    assert live_version(second_log) == live_version(first_log)  # and the same queue, not a new round
    credentials = json.loads((tmp_path / "credentials.json").read_text())
    # Both servers are gone after --once; the data stays.
    assert (tmp_path / "label-studio" / "data").is_dir() and (tmp_path / "models" / "projects" / "1").is_dir()
    with pytest.raises(requests.ConnectionError):  # Label Studio stopped with the demo
        requests.get(f"http://127.0.0.1:{ls_port}/health", timeout=2)
    assert len(credentials["api_key"]) == 40


def test_ctrl_c_stops_the_demo_cleanly(tmp_path: Path) -> None:
    ls_port, backend_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "demo",
        "--root",
        str(tmp_path),
        "--label-studio-port",
        str(ls_port),
        "--backend-port",
        str(backend_port),
        "--tasks",
        "20",
    ]
    demo = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert demo.stdout is not None
        for line in demo.stdout:  # ready once it prints how to stop it
            if "Ctrl-C stops both" in line:
                break
        assert requests.get(f"http://127.0.0.1:{backend_port}/health", timeout=5).status_code == 200
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
    for port in (ls_port, backend_port):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
