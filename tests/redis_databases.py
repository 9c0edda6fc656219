"""Which database of the shared Redis at 127.0.0.1:6379 each test module owns.

A module empties only its own database (the ``redis_url`` fixture in tests/conftest.py), so
two modules never see, or wipe, each other's queue and state. Database 0 stays unused: a
developer's own data may live there. The benchmarks own the numbers their ``REDIS_DB``
constants name (bench/*.py); tests/test_redis_databases.py keeps the two sets apart.

With pytest-xdist, keep a module in one process (``--dist loadfile``): two processes running
tests of one module would share, and empty, one database.
"""

from __future__ import annotations

HOST = "127.0.0.1"
PORT = 6379
N_DATABASES = 16  # Redis's default

DATABASE_OF_MODULE: dict[str, int] = {
    "tests.backend.test_web_process": 1,
    "tests.backend.jobs.test_coordination": 2,
    "tests.backend.state.test_redis_state": 3,
    "tests.backend.state.test_ledger": 4,
    "tests.backend.jobs.test_workers": 15,
    "tests.e2e.test_annotator_load": 8,
    "tests.e2e.test_reliability": 10,
    "tests.deploy.test_compose_commands": 11,
    "tests.e2e.test_scale_out": 12,
    "tests.e2e.test_active_learning_loop": 14,
}


def database_url(database: int) -> str:
    return f"redis://{HOST}:{PORT}/{database}"
