"""Real Label Studio servers (on SQLite, on PostgreSQL) for the whole test session, each started only when asked
for, and each test module's own database of the shared Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from devtools.label_studio import LabelStudioServer
from tests.redis_databases import DATABASE_OF_MODULE, database_url


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
    """Like ``label_studio``, on a fresh PostgreSQL database (dropped at the end; see devtools/postgres.py)."""
    server = LabelStudioServer(tmp_path_factory.mktemp("label-studio-postgres"), database="postgresql")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_url(request: pytest.FixtureRequest) -> str:
    """The URL of this module's own Redis database (tests/redis_databases.py), emptied before its first test."""
    module = request.module.__name__
    if module not in DATABASE_OF_MODULE:
        pytest.fail(
            f"{module} has no Redis database of its own: add it to DATABASE_OF_MODULE in tests/redis_databases.py",
            pytrace=False,
        )
    url = database_url(DATABASE_OF_MODULE[module])
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def empty_redis_url(redis_url: str) -> str:
    """``redis_url``, emptied again before this test: for a module whose tests each start a backend, so that
    one test's queue and project state never reach the next (project ids repeat across Label Studio servers)."""
    redis.Redis.from_url(redis_url).flushdb()
    return redis_url
