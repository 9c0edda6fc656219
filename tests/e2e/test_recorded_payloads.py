"""The committed Label Studio payloads (tests/fixtures/label_studio_payloads) still match what the real server sends.

One scenario drives a real Label Studio 1.23.2 against a recording fake ML backend
(devtools/recorder.py) and records every call the server makes: ``/health``, ``/setup``,
``/predict``, ``/versions`` and the webhook events. Each test then checks one fixture
against its fresh recording: same method and path, same Content-Type, and the same
*shape* of the JSON body (the keys, recursively, and the JSON type of each value; ids,
timestamps and values may differ). ``tests/backend/http/test_app.py`` replays the fixtures
against the app, so this keeps that replay honest.

Shapes: an object maps each key to the shape of its value, an array has the shape of
its first element (an empty array fits any array), a scalar is its JSON type name
(``string``, ``number``, ``boolean``), and ``null`` fits any shape.

Refreshing the fixtures::

    ALFAMIX_RECORD_PAYLOADS=1 .venv/bin/python -m pytest tests/e2e/test_recorded_payloads.py

rewrites ``<name>.json`` (the body, as sent) and ``<name>.headers.json`` (method, path,
headers) for every fixture from the fresh recording before the comparisons run, with the
setup ``access_token``, the webhooks' project ``token`` and any ``Authorization`` header
replaced by ``"REDACTED"``.
Run it alone, as above: on a fresh server the project gets id 1, which
tests/backend/http/test_app.py expects (the refresh refuses any other id). Without the
variable nothing is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.images import import_images, write_mnist_pngs
from devtools.label_studio import LabelStudioServer
from devtools.project import DIGITS, Project, choice_result, choices_config
from devtools.recorder import RecordedRequest, RecordingBackend

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "label_studio_payloads"
REFRESH = os.environ.get("ALFAMIX_RECORD_PAYLOADS") == "1"
REDACTED = "REDACTED"
PUSHED_VERSION = "pushed-v1"

WEBHOOKS = [
    "webhook_annotation_created",
    "webhook_annotation_created_skipped",
    "webhook_annotation_updated",
    "webhook_annotations_deleted",
    "webhook_start_training",
    "webhook_tasks_created",
    "webhook_project_updated",
]
WITH_BODY = ["setup", "predict", *WEBHOOKS]
HEADERS_ONLY = ["health", "versions"]
ALL = WITH_BODY + HEADERS_ONLY

Shape = dict[str, "Shape"] | list["Shape"] | str
_JSON_TYPES = {str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def shape(value: Any) -> Shape:
    """The shape of a parsed JSON value: {key: shape} for objects, [shape of the first element] or [] for arrays."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return _JSON_TYPES[type(value)]


def _kind(s: Shape) -> str:
    return "object" if isinstance(s, dict) else "array" if isinstance(s, list) else s


def shape_differences(expected: Shape, actual: Shape, path: str = "$") -> list[str]:
    """Every key path where the recorded shape departs from the fixture's, one line each."""
    if expected == "null" or actual == "null":
        return []
    if isinstance(expected, dict) and isinstance(actual, dict):
        differences = [f"{path}.{key}: in the fixture, missing from the recording" for key in expected - actual.keys()]
        differences += [f"{path}.{key}: in the recording, missing from the fixture" for key in actual - expected.keys()]
        for key in expected.keys() & actual.keys():
            differences += shape_differences(expected[key], actual[key], f"{path}.{key}")
        return sorted(differences)
    if isinstance(expected, list) and isinstance(actual, list):
        if not expected or not actual:
            return []
        return shape_differences(expected[0], actual[0], f"{path}[0]")
    if _kind(expected) != _kind(actual):
        return [f"{path}: {_kind(expected)} in the fixture, {_kind(actual)} in the recording"]
    return []


def _is_call(method: str, path: str) -> Callable[[RecordedRequest], bool]:
    return lambda request: (request.method, request.path) == (method, path)


def _is_webhook(action: str, *, cancelled: bool = False) -> Callable[[RecordedRequest], bool]:
    def match(request: RecordedRequest) -> bool:
        if (request.method, request.path) != ("POST", "/webhook"):
            return False
        body = request.json()
        return bool(
            body.get("action") == action and body.get("annotation", {}).get("was_cancelled", False) == cancelled
        )

    return match


@pytest.fixture(scope="module")
def recorded(
    label_studio: LabelStudioServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, RecordedRequest]]:
    """{fixture name: the request that Label Studio sent for it}, one scenario for the whole module."""
    pngs = [path for path, _ in write_mnist_pngs(tmp_path_factory.mktemp("recorded-payloads"), 5, random_state=0)]
    with RecordingBackend() as backend:
        project = Project.create(label_studio, "Recorded payloads", choices_config(DIGITS))
        p = project.project_id
        task_ids = sorted(import_images(label_studio.url, label_studio.api_key, p, pngs[:4]))
        found: dict[str, RecordedRequest] = {}

        def after(name: str, match: Callable[[RecordedRequest], bool], trigger: Callable[[], Any]) -> Any:
            since = len(backend.requests())
            result = trigger()
            found[name] = backend.wait_for(match, since=since, what=name)
            return result

        ml_id = after("setup", _is_call("POST", "/setup"), lambda: project.connect(backend.url))
        # Push predictions and switch the project to their version, as our backend does after a round:
        # an annotation then carries the prediction shown ({} without one), and /predict tasks carry
        # their predictions. A version other than the recorder's, or Label Studio skips /predict for them.
        project.api(
            "POST",
            f"/api/projects/{p}/import/predictions",
            json=[
                {"task": task_id, "model_version": PUSHED_VERSION, "score": 0.5, "result": choice_result(["7"])}
                for task_id in task_ids
            ],
        )
        project.api("PATCH", f"/api/projects/{p}", json={"model_version": PUSHED_VERSION})
        annotation = after(
            "webhook_annotation_created",
            _is_webhook("ANNOTATION_CREATED"),
            lambda: project.submit(task_ids[0], ["7"]),
        )
        after(
            "webhook_annotation_created_skipped",
            _is_webhook("ANNOTATION_CREATED", cancelled=True),
            lambda: project.api(
                "POST", f"/api/tasks/{task_ids[1]}/annotations/", json={"result": [], "was_cancelled": True}
            ),
        )
        after(
            "webhook_annotation_updated",
            _is_webhook("ANNOTATION_UPDATED"),
            lambda: project.api("PATCH", f"/api/annotations/{annotation['id']}", json={"result": choice_result(["9"])}),
        )
        after(
            "webhook_annotations_deleted",
            _is_webhook("ANNOTATIONS_DELETED"),
            lambda: project.api("DELETE", f"/api/annotations/{annotation['id']}"),
        )
        after(
            "webhook_start_training",
            _is_webhook("START_TRAINING"),
            lambda: project.api("POST", f"/api/ml/{ml_id}/train", json={}),
        )
        after(
            "webhook_tasks_created",
            _is_webhook("TASKS_CREATED"),
            lambda: import_images(label_studio.url, label_studio.api_key, p, pngs[4:]),
        )
        after(
            "webhook_project_updated",
            _is_webhook("PROJECT_UPDATED"),
            lambda: project.api("PATCH", f"/api/projects/{p}", json={"title": "Recorded payloads, renamed"}),
        )
        # The third and fourth tasks, unannotated: on a fresh server tasks 3 and 4 of project 1,
        # which tests/backend/http/test_app.py expects of predict.json.
        after(
            "predict",
            _is_call("POST", "/predict"),
            lambda: project.api(
                "POST",
                "/api/dm/actions",
                params={"id": "retrieve_tasks_predictions", "project": p},
                json={"selectedItems": {"all": False, "included": task_ids[2:]}},
            ),
        )
        after("versions", _is_call("GET", "/versions"), lambda: project.api("GET", f"/api/ml/{ml_id}/versions"))
        found["health"] = backend.wait_for(_is_call("GET", "/health"), what="health")
        if REFRESH:
            assert found["setup"].json()["project"].startswith("1."), "run this module alone so the project id is 1"
            for name in ALL:
                _write_fixture(name, found[name])
        yield found


def _fixture_body(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _fixture_request(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / f"{name}.headers.json").read_text()))


def _write_fixture(name: str, request: RecordedRequest) -> None:
    headers = {key: REDACTED if key.lower() == "authorization" else value for key, value in request.headers.items()}
    meta = {"method": request.method, "path": request.path, "headers": headers}
    (FIXTURES / f"{name}.headers.json").write_text(json.dumps(meta, indent=2) + "\n")
    if name in WITH_BODY:
        body = request.json()
        if name == "setup":
            body["access_token"] = REDACTED
        if isinstance(body.get("project"), dict) and "token" in body["project"]:
            body["project"]["token"] = REDACTED
        (FIXTURES / f"{name}.json").write_text(json.dumps(body))


@pytest.mark.parametrize("name", ALL)
def test_recorded_request_line_matches_the_fixture(recorded: dict[str, RecordedRequest], name: str) -> None:
    fixture = _fixture_request(name)
    assert (recorded[name].method, recorded[name].path) == (fixture["method"], fixture["path"])


@pytest.mark.parametrize("name", ALL)
def test_recorded_content_type_matches_the_fixture(recorded: dict[str, RecordedRequest], name: str) -> None:
    assert recorded[name].header("Content-Type") == _fixture_request(name)["headers"].get("Content-Type")


@pytest.mark.parametrize("name", WITH_BODY)
def test_recorded_body_is_json(recorded: dict[str, RecordedRequest], name: str) -> None:
    assert recorded[name].header("Content-Type") == "application/json"


@pytest.mark.parametrize("name", WITH_BODY)
def test_recorded_body_has_the_shape_of_the_fixture(recorded: dict[str, RecordedRequest], name: str) -> None:
    differences = shape_differences(shape(_fixture_body(name)), shape(recorded[name].json()))
    assert not differences, f"{name}.json differs in shape from what Label Studio sent:\n" + "\n".join(differences)


@pytest.mark.parametrize("name", WEBHOOKS)
def test_webhooks_carry_no_authorization_header(recorded: dict[str, RecordedRequest], name: str) -> None:
    has_authorization = recorded[name].header("Authorization") is not None
    assert not has_authorization, (
        f"{name} came with an Authorization header; the auto-created webhook should have empty headers"
    )


def test_shape_differences_name_the_key_path() -> None:
    fixture: dict[str, Any] = {"a": {"b": [{"c": 1, "d": "x"}]}, "e": None, "f": []}
    recording: dict[str, Any] = {"a": {"b": [{"c": "1", "g": True}]}, "e": {"h": 1}, "f": [2]}
    assert shape_differences(shape(fixture), shape(recording)) == [
        "$.a.b[0].c: number in the fixture, string in the recording",
        "$.a.b[0].d: in the fixture, missing from the recording",
        "$.a.b[0].g: in the recording, missing from the fixture",
    ]
