"""Real Label Studio servers (on SQLite, on PostgreSQL) for the whole test session, each started only when asked for."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.label_studio import LabelStudioServer


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """A started Label Studio 1.23.2; its log stays in pytest's temporary folder after the run."""
    server = LabelStudioServer(tmp_path_factory.mktemp("label-studio"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def label_studio_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """Like ``label_studio``, on a fresh PostgreSQL database (dropped at the end; see tests/e2e/postgres.py)."""
    server = LabelStudioServer(tmp_path_factory.mktemp("label-studio-postgres"), database="postgresql")
    server.start()
    try:
        yield server
    finally:
        server.stop()
