"""The backend as users start it: `python -m backend` (and `python -m backend.jobs.worker`) subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import requests

from devtools.label_studio import REPO_ROOT, free_port

SERVER_COMMAND = [sys.executable, "-m", "backend"]
WORKER_COMMAND = [sys.executable, "-m", "backend.jobs.worker"]
# The catch-up thread's first pass finds a freshly emptied Redis database without its marker, takes that for
# lost state and asks for a round of every project the server has seen: a round that covers no new label,
# ALFAMIX_RECONCILE_SECONDS (30) after the server started, wherever the test has got to by then on this
# machine. Tests that check which rounds ran, where and on what, put that pass (and every later one) past their end.
NO_CATCH_UP = {"ALFAMIX_RECONCILE_SECONDS": "3600"}


class BackendProcesses:
    """The HTTP server and, with ``workers`` > 0, that many RQ workers, sharing one environment.

    More workers, each with its own environment overrides (another MODEL_DIR, as on
    another machine), can be added and stopped while the others run.
    """

    def __init__(
        self,
        root: Path,
        env: dict[str, str],
        workers: int = 0,
        server_command: list[str] = SERVER_COMMAND,
        worker_command: list[str] = WORKER_COMMAND,
        port: int | None = None,
    ) -> None:
        self.root = root
        self.port = port or free_port()
        self.env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "MODEL_DIR": str(root / "model"),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.workers = workers
        self.server_command = server_command
        self.worker_command = worker_command
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BackendProcesses:
        self._spawn("backend", self.server_command, {})
        for index in range(self.workers):
            self.start_worker(f"worker-{index}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            for process in self.processes.values():
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{self.log_tail()}")
            time.sleep(0.2)
        raise RuntimeError(f"the backend did not answer /health within 60 s:\n{self.log_tail()}")

    def start_worker(self, name: str, env: dict[str, str] | None = None) -> int:
        """Starts one more worker; returns its pid (round records name it as host:pid)."""
        return self._spawn(name, self.worker_command, env or {}).pid

    def stop_process(self, name: str, timeout: float = 30.0) -> None:
        """SIGTERM (a worker finishes its current job first), SIGKILL after ``timeout``."""
        process = self.processes[name]
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for name in self.processes:
            self.stop_process(name, timeout=10)

    def log(self, name: str = "backend") -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(
            f"--- {name} ---\n" + "\n".join(self.log(name).splitlines()[-lines:]) for name in self.processes
        )

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("wb")
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def __enter__(self) -> BackendProcesses:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
