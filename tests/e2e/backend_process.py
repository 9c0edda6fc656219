"""The backend as users start it: `python -m backend` (and `python -m backend.worker`) subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import requests

from tests.e2e.label_studio import REPO_ROOT, free_port


class BackendProcesses:
    """The HTTP server and, with ``workers`` > 0, that many RQ workers, sharing one environment."""

    def __init__(self, root: Path, env: dict[str, str], workers: int = 0) -> None:
        self.root = root
        self.port = free_port()
        self.env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "MODEL_DIR": str(root / "model"),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.workers = workers
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BackendProcesses:
        self._spawn("backend", [sys.executable, "-m", "backend"])
        for index in range(self.workers):
            self._spawn(f"worker-{index}", [sys.executable, "-m", "backend.worker"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            for process in self._processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args} exited with {process.returncode}:\n{self.log_tail()}")
            time.sleep(0.2)
        raise RuntimeError(f"the backend did not answer /health within 60 s:\n{self.log_tail()}")

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def log(self, name: str = "backend") -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        names = ["backend", *(f"worker-{i}" for i in range(self.workers))]
        return "\n".join(f"--- {name} ---\n" + "\n".join(self.log(name).splitlines()[-lines:]) for name in names)

    def _spawn(self, name: str, command: list[str]) -> None:
        log = (self.root / f"{name}.log").open("wb")
        self._processes.append(
            subprocess.Popen(
                command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )

    def __enter__(self) -> BackendProcesses:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
