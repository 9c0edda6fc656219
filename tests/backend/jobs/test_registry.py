"""The job registry: every kind resolves to a pipeline function, and the follow-up rules."""

from __future__ import annotations

import inspect

import pytest

from backend.jobs.registry import JOB_FUNCTIONS, JobKind, follow_ups, job_function


@pytest.mark.parametrize("kind", list(JobKind))
def test_every_kind_names_a_job_that_takes_context_project_and_stage(kind: JobKind) -> None:
    function = job_function(kind)
    assert list(inspect.signature(function).parameters) == ["context", "project_id", "stage"]
    assert function.__module__ == "backend.pipeline.jobs"


def test_the_registry_lists_each_kind_once() -> None:
    assert sorted(JOB_FUNCTIONS) == sorted(JobKind) and len(set(JOB_FUNCTIONS.values())) == len(JobKind)


@pytest.mark.parametrize(
    ("kind", "result", "expected"),
    [
        (JobKind.ROUND, {"model_version": "v2", "n_unembedded": 0}, [JobKind.PRUNE]),
        (JobKind.ROUND, {"model_version": None, "n_unembedded": 0}, []),
        (JobKind.ROUND, {"model_version": "v2", "n_unembedded": 40}, [JobKind.PRUNE, JobKind.EMBED]),
        (JobKind.EMBED, {"needs_queue": True, "more": True}, [JobKind.ROUND, JobKind.EMBED]),
        (JobKind.EMBED, {"needs_queue": False, "more": False}, []),
        (JobKind.PRUNE, {"more": True}, [JobKind.PRUNE]),
        (JobKind.SECURE_WEBHOOKS, {"status": "done"}, []),
    ],
)
def test_follow_ups(kind: JobKind, result: dict[str, object], expected: list[JobKind]) -> None:
    assert follow_ups(kind, result) == expected
