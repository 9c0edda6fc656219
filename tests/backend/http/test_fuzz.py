"""Schemathesis fuzzes every endpoint of the OpenAPI description: over 10,000 requests, no 5xx.

The app runs in process with basic auth on, so both refused and authenticated requests are
generated; jobs go to a recording dispatcher. Valid and invalid bodies, paths and queries
come from the schema (schemathesis's positive and negative generation modes).
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from backend.http.app import create_app
from backend.ml_backend import ALFAMixBackend
from backend.settings import Settings
from tests.backend.http.test_app import AUTH, RecordingDispatcher

EXAMPLES_PER_MODE = 900
MIN_REQUESTS = 10_000


def fuzz(
    operation: schemathesis.APIOperation, mode: schemathesis.GenerationMode, statuses: Counter[tuple[str, int]]
) -> None:
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: schemathesis.Case) -> None:
        # About half the requests authenticate (decided by the generated data), so both paths are fuzzed.
        response = case.call(
            auth=AUTH if zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode()) % 2 else None
        )
        statuses[(operation.label, response.status_code)] += 1
        assert response.status_code < 500, (operation.label, response.status_code, response.text[:300])

    try:
        call()
    except Unsatisfiable:
        # Nothing to make invalid (e.g. GET /health takes no input): negative mode has no cases.
        assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label


def test_ten_thousand_generated_requests_get_no_server_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    config = Settings(model_dir=tmp_path, basic_auth_user=AUTH[0], basic_auth_pass=AUTH[1])
    app = create_app(ALFAMixBackend(config, RecordingDispatcher()))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, auth=AUTH)
    statuses: Counter[tuple[str, int]] = Counter()

    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            fuzz(operation, mode, statuses)

    total = sum(statuses.values())
    print(f"{total} requests:", dict(sorted(statuses.items())))
    assert total >= MIN_REQUESTS
    assert not [key for key in statuses if key[1] >= 500]
    assert {status for _, status in statuses} >= {200, 400, 401, 422}
