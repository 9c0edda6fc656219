"""One real Label Studio server for the whole test session, started only when a test asks for it."""

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
