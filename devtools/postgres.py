"""A PostgreSQL server for end-to-end tests: a fresh database per Label Studio, copied from a template.

SQL goes through the ``psql`` client, since the test venv has no PostgreSQL driver. The
server is the one .ci/run makes sure of: 127.0.0.1:5432, user ``postgres``, trust
authentication. ``ALFAMIX_TEST_PG_HOST``, ``ALFAMIX_TEST_PG_PORT``, ``ALFAMIX_TEST_PG_USER``
and ``ALFAMIX_TEST_PG_PASSWORD`` point the tests at another one.

Only the standard library is used here.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# Names we generate ourselves; checking them once lets the SQL quote them without escaping.
_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_FIELD_SEPARATOR = "\x1f"


class PostgresError(RuntimeError):
    """psql is missing, the server does not answer, or a statement failed."""


def _checked(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"database name {name!r} should match {_NAME_RE.pattern}")
    return f'"{name}"'


def unique_name(prefix: str) -> str:
    """A database name no other test process picks, e.g. ``alfamix_ls_4242_9f86d081``."""
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Postgres:
    """Where the test PostgreSQL listens, and the few statements the tests need."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = "postgres"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Postgres:
        """The defaults, overridden by ``ALFAMIX_TEST_PG_HOST``, ``_PORT``, ``_USER`` and ``_PASSWORD``."""
        environ = os.environ if environ is None else environ
        default = cls()
        return cls(
            host=environ.get("ALFAMIX_TEST_PG_HOST", default.host),
            port=int(environ.get("ALFAMIX_TEST_PG_PORT", default.port)),
            user=environ.get("ALFAMIX_TEST_PG_USER", default.user),
            password=environ.get("ALFAMIX_TEST_PG_PASSWORD", default.password),
        )

    def label_studio_env(self, database: str) -> dict[str, str]:
        """The variables that point Label Studio at ``database`` (label_studio/core/settings/base.py).

        ``DJANGO_DB=default`` selects the PostgreSQL entry of its ``DATABASES_ALL``.
        """
        return {
            "DJANGO_DB": "default",
            "POSTGRE_NAME": database,
            "POSTGRE_USER": self.user,
            "POSTGRE_PASSWORD": self.password,
            "POSTGRE_HOST": self.host,
            "POSTGRE_PORT": str(self.port),
        }

    def query(self, sql: str, database: str = "postgres") -> list[tuple[str, ...]]:
        """The rows ``sql`` returns in ``database``, every field as psql prints it."""
        psql = shutil.which("psql")
        if psql is None:
            raise PostgresError("psql is not installed (apt-get install postgresql-client, or run .ci/run)")
        command = [psql, "-X", "-q", "-A", "-t", "-F", _FIELD_SEPARATOR, "-v", "ON_ERROR_STOP=1"]
        command += ["-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database, "-c", sql]
        env = {**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10"}
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        if completed.returncode != 0:
            raise PostgresError(
                f"psql on {self.user}@{self.host}:{self.port}/{database} failed "
                f"(exit code {completed.returncode}) on {sql!r}: {completed.stderr.strip()}"
            )
        return [tuple(line.split(_FIELD_SEPARATOR)) for line in completed.stdout.splitlines()]

    def exists(self, database: str) -> bool:
        _checked(database)
        return bool(self.query(f"SELECT 1 FROM pg_database WHERE datname = '{database}'"))

    def create(self, database: str, template: str | None = None) -> None:
        """``CREATE DATABASE``, as a copy of ``template`` when given (nobody may be connected to it)."""
        sql = f"CREATE DATABASE {_checked(database)}"
        self.query(sql if template is None else f"{sql} TEMPLATE {_checked(template)}")

    def rename(self, database: str, new_name: str) -> None:
        self.query(f"ALTER DATABASE {_checked(database)} RENAME TO {_checked(new_name)}")

    def drop(self, database: str) -> None:
        """Drops ``database`` if it exists, ending the sessions still connected to it."""
        self.query(f"DROP DATABASE IF EXISTS {_checked(database)} WITH (FORCE)")


def ensure_template(postgres: Postgres, name: str, lock_path: Path, build: Callable[[str], None]) -> str:
    """Database ``name``, made once by ``build(database)`` and then only found.

    ``build`` fills ``<name>_build``, which becomes ``name`` by ``ALTER DATABASE ... RENAME``
    only once ``build`` has returned, so a failed or killed build never leaves a template
    behind. A lock file serialises the processes (pytest-xdist) that share ``lock_path``.
    """
    if postgres.exists(name):
        return name
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if postgres.exists(name):
            return name
        building = f"{name}_build"
        postgres.drop(building)  # what a killed build left
        postgres.create(building)
        started = time.monotonic()
        try:
            build(building)
        except BaseException:
            postgres.drop(building)
            raise
        postgres.rename(building, name)
        logger.info("built the template database %s in %.1f s", name, time.monotonic() - started)
    return name
