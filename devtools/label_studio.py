"""A real Label Studio server, started as a subprocess for end-to-end tests, benchmarks and the demo.

The server comes from ``.venv-label-studio`` (built by ``scripts/label_studio_venv.sh``)
and keeps everything it writes (SQLite database, uploads, its config and data
directories) under one root folder. A fresh database takes about 20 s to migrate,
so the first start builds a migrated, user-less template database inside the venv
and every later start copies it (about 3 s to a first answer).

With ``database="postgresql"`` the server writes to a fresh PostgreSQL database instead
(see ``devtools/postgres.py``), made by ``CREATE DATABASE ... TEMPLATE`` from a migrated
template database that the first such start builds, and dropped on stop.

Only the standard library and ``requests`` are used here.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import requests

from devtools.postgres import Postgres, ensure_template, unique_name

logger = logging.getLogger(__name__)

LABEL_STUDIO_VERSION = "1.23.2"
REPO_ROOT = Path(__file__).resolve().parents[1]
VENV = REPO_ROOT / ".venv-label-studio"
VENV_SCRIPT = REPO_ROOT / "scripts" / "label_studio_venv.sh"
# Label Studio reads these without its LABEL_STUDIO_ prefix too (core/utils/params.py:get_env),
# so an inherited HOST, PORT or DEBUG would change the server under test.
_INHERITED_NAMES_TO_DROP = (
    "HOST",
    "PORT",
    "USERNAME",
    "PASSWORD",
    "USER_TOKEN",
    "DEBUG",
    "LOG_LEVEL",
    "BASE_DATA_DIR",
    "DATABASE_NAME",
    "DJANGO_DB",
    "DJANGO_SETTINGS_MODULE",
    "SECRET_KEY",
    "LOCAL_FILES_DOCUMENT_ROOT",
    "LOCAL_FILES_SERVING_ENABLED",
    "SSRF_PROTECTION_ENABLED",
    "ML_BLOCK_LOCAL_IP",
)
_STARTED_RE = re.compile(r"Starting development server at http://[^:/]+:(\d+)/")
_TEMPLATE_DB_NAME = "label_studio.sqlite3"
_POSTGRES_TEMPLATE = "alfamix_ls_template_" + LABEL_STUDIO_VERSION.replace(".", "_")
DATABASES = ("sqlite", "postgresql")
_LOG_TAIL_LINES = 40


class LabelStudioError(RuntimeError):
    """The Label Studio server (or its venv, or its template database) could not be made ready."""


@functools.cache
def ensure_venv() -> Path:
    """Path of the ``label-studio`` executable, after scripts/label_studio_venv.sh (instant once installed).

    The script alone knows what the venv should hold (its stamp names the pins), so it runs
    once per process rather than this function guessing the stamp.
    """
    completed = subprocess.run(["bash", str(VENV_SCRIPT)], cwd=REPO_ROOT, capture_output=True, text=True)
    if completed.returncode != 0:
        raise LabelStudioError(
            f"{VENV_SCRIPT.name} failed with exit code {completed.returncode}:\n{completed.stderr[-4000:]}"
        )
    return VENV / "bin" / "label-studio"


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, n_lines: int = _LOG_TAIL_LINES) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(lines[-n_lines:])


def _server_env(root: Path, data_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    """The inherited environment without Label Studio settings, plus ours."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LABEL_STUDIO_", "HEARTEX_")) and key not in _INHERITED_NAMES_TO_DROP
    }
    xdg = root / "xdg"
    env.update(
        {
            # settings/base.py computes its data dir at import time, before --data-dir is parsed,
            # so the flag alone still creates ~/.local/share/label-studio; the variable does not.
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            # contextlog keeps a user id under the XDG config dir (appdirs).
            "XDG_CONFIG_HOME": str(xdg / "config"),
            "XDG_DATA_HOME": str(xdg / "data"),
            "XDG_CACHE_HOME": str(xdg / "cache"),
            "LATEST_VERSION_CHECK": "false",  # no request to pypi.org on start
            "COLLECT_ANALYTICS": "false",
            # The Community settings default to Label Studio's own Sentry project; "" switches it off
            # (and with it the sentry-trace/baggage headers on calls to ML backends).
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "PYTHONUNBUFFERED": "1",  # so the "Starting development server" line reaches the log at once
        }
    )
    env.update(extra)
    return env


def _migrate(executable: Path, build_root: Path, extra_env: dict[str, str]) -> Path:
    """Runs ``label-studio version`` (it applies the migrations and exits) in ``build_root``; its data dir."""
    data_dir = build_root / "data"
    log_path = build_root / "migrate.log"
    with open(log_path, "wb") as log:
        completed = subprocess.run(
            [str(executable), "version"],
            cwd=build_root,
            env=_server_env(build_root, data_dir, extra_env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    if completed.returncode != 0:
        raise LabelStudioError(
            f"migrating a template database failed (exit code {completed.returncode}):\n{_tail(log_path)}"
        )
    return data_dir


def migrated_template(executable: Path) -> Path:
    """A migrated Label Studio database with no user in it, built once per venv.

    Built by ``label-studio version``, which applies the migrations and exits. A
    lock file serialises concurrent builders (pytest-xdist); the file appears by
    rename, so a reader never sees a half-written database.
    """
    template_dir = VENV / f"template-{LABEL_STUDIO_VERSION}"
    template = template_dir / _TEMPLATE_DB_NAME
    if template.is_file():
        return template
    template_dir.mkdir(parents=True, exist_ok=True)
    with open(template_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if template.is_file():
            return template
        with tempfile.TemporaryDirectory(prefix="build-", dir=template_dir) as build:
            started = time.monotonic()
            data_dir = _migrate(executable, Path(build), {})
            built = data_dir / _TEMPLATE_DB_NAME
            if not built.is_file():
                raise LabelStudioError(f"label-studio version wrote no {built}:\n{_tail(Path(build) / 'migrate.log')}")
            leftovers = [p.name for p in data_dir.glob(_TEMPLATE_DB_NAME + "-*")]
            if leftovers:
                raise LabelStudioError(f"template database left journal files behind: {leftovers}")
            os.replace(built, template)
            logger.info("migrated a template Label Studio database in %.1f s", time.monotonic() - started)
    return template


def migrated_postgres_template(executable: Path, postgres: Postgres) -> str:
    """The name of a migrated, user-less PostgreSQL database to copy, built once per server and version."""
    template_dir = VENV / f"template-{LABEL_STUDIO_VERSION}"
    template_dir.mkdir(parents=True, exist_ok=True)

    def build(database: str) -> None:
        with tempfile.TemporaryDirectory(prefix="build-postgres-", dir=template_dir) as build_root:
            _migrate(executable, Path(build_root), postgres.label_studio_env(database))

    return ensure_template(postgres, _POSTGRES_TEMPLATE, template_dir / ".postgres.lock", build)


class LabelStudioServer:
    """``label-studio start`` in its own process group, with a legacy API token for one admin user.

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with LabelStudioServer() as ls:
            requests.get(f"{ls.url}/api/projects", headers=ls.headers)

    Everything lives under ``root`` (a new temporary folder, removed on stop, when
    none is given): ``data/`` (SQLite database, uploads), ``files/`` (the local-files
    document root, also :attr:`document_root`), ``xdg/`` and ``label-studio.log``.

    ``database`` is ``"sqlite"`` or ``"postgresql"``; with the latter the server writes to a
    fresh database on :attr:`postgres` named :attr:`postgres_database`, dropped on stop.
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        username: str = "admin@example.com",
        password: str = "e2e-password-123",
        api_key: str | None = None,
        extra_env: dict[str, str] | None = None,
        reuse_migrations: bool = True,
        startup_timeout: float = 180.0,
        database: str = "sqlite",
    ) -> None:
        if database not in DATABASES:
            raise ValueError(f"database={database!r} should be one of {DATABASES}")
        self._owns_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="label-studio-")) if root is None else Path(root)
        self.data_dir = self.root / "data"
        self.document_root = self.root / "files"
        self.log_path = self.root / "label-studio.log"
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.api_key = api_key if api_key is not None else secrets.token_hex(20)
        if len(self.api_key) <= 5:
            raise ValueError(f"api_key of length {len(self.api_key)} is ignored by Label Studio; it needs > 5")
        self.extra_env = dict(extra_env or {})
        self.reuse_migrations = reuse_migrations
        self.startup_timeout = startup_timeout
        self.startup_seconds: float | None = None
        self.database = database
        self.postgres = Postgres.from_env() if database == "postgresql" else None
        self.postgres_database: str | None = None  # set by start(); kept after stop() for checks
        self._process: subprocess.Popen[bytes] | None = None
        self._personal_access_token: str | None = None

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:40123``."""
        if self.port is None:
            raise LabelStudioError("the server has no port yet; call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        """The header that authenticates API calls with the legacy token."""
        return {"Authorization": f"Token {self.api_key}"}

    def session(self) -> requests.Session:
        """A ``requests`` session that sends :attr:`headers` with every call."""
        session = requests.Session()
        session.headers.update(self.headers)
        return session

    def start(self) -> LabelStudioServer:
        """Starts the server and returns once ``/health`` answers 200; raises LabelStudioError otherwise."""
        if self._process is not None:
            raise LabelStudioError("this server was already started")
        executable = ensure_venv()
        started = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.document_root.mkdir(parents=True, exist_ok=True)
        database_env = self._prepare_database(executable)
        if self.port is None:
            self.port = free_port()
        env = _server_env(
            self.root,
            self.data_dir,
            {
                "LABEL_STUDIO_USERNAME": self.username,
                "LABEL_STUDIO_PASSWORD": self.password,
                "LABEL_STUDIO_USER_TOKEN": self.api_key,
                "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
                # Let the server reach ML backends and webhooks on loopback addresses.
                "ML_BLOCK_LOCAL_IP": "false",
                "SSRF_PROTECTION_ENABLED": "false",
                "LOCAL_FILES_SERVING_ENABLED": "true",
                "LOCAL_FILES_DOCUMENT_ROOT": str(self.document_root),
                **database_env,
                **self.extra_env,
            },
        )
        command = [
            str(executable),
            "start",
            "--no-browser",
            "--internal-host",
            self.host,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        try:
            with open(self.log_path, "ab") as log:
                self._process = subprocess.Popen(
                    command,
                    cwd=self.root,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, so stop() reaches every child
                )
            self._wait_until_ready(started)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        logger.info("Label Studio up at %s after %.1f s", self.url, self.startup_seconds)
        return self

    def _prepare_database(self, executable: Path) -> dict[str, str]:
        """Copies a migrated template into place; the variables that point the server at it."""
        if self.postgres is None:
            database = self.data_dir / _TEMPLATE_DB_NAME
            if self.reuse_migrations and not database.exists():
                shutil.copyfile(migrated_template(executable), database)
            return {}
        template = migrated_postgres_template(executable, self.postgres) if self.reuse_migrations else None
        self.postgres_database = unique_name("alfamix_ls")
        self.postgres.create(self.postgres_database, template=template)
        return self.postgres.label_studio_env(self.postgres_database)

    def _wait_until_ready(self, started: float) -> None:
        assert self._process is not None
        deadline = started + self.startup_timeout
        port_confirmed = False
        while time.monotonic() < deadline:
            exit_code = self._process.poll()
            if exit_code is not None:
                raise LabelStudioError(
                    f"label-studio exited with code {exit_code} before answering; "
                    f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
                )
            if not port_confirmed:
                # label-studio silently moves to the next port when ours was taken meanwhile.
                match = _STARTED_RE.search(self.log_path.read_text(errors="replace"))
                if match:
                    self.port = int(match.group(1))
                    port_confirmed = True
            if port_confirmed:
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                        return
            time.sleep(0.2)
        raise LabelStudioError(
            f"Label Studio did not answer /health within {self.startup_timeout:.0f} s; "
            f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the group, SIGKILL after ``timeout`` s; drops its PostgreSQL database; removes a temp root."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout)
        if self.postgres is not None and self.postgres_database is not None:
            self.postgres.drop(self.postgres_database)
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def personal_access_token(self) -> str:
        """The admin's Personal Access Token, created on first use (Label Studio allows one per user)."""
        if self._personal_access_token is None:
            created = requests.post(f"{self.url}/api/token/", headers=self.headers, timeout=30)
            if created.status_code != 201:
                raise LabelStudioError(f"POST /api/token/ answered {created.status_code}: {created.text[:300]}")
            self._personal_access_token = str(created.json()["token"])
        return self._personal_access_token

    def log_tail(self, n_lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the server log."""
        return _tail(self.log_path, n_lines)

    def __enter__(self) -> LabelStudioServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
