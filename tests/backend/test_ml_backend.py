"""ALFAMixBackend in Label Studio's ML-backend shape: setup, predict and fit called directly, without HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.errors import LabelConfigError
from backend.labelstudio.label_config import parse_label_config
from backend.ml_backend import ALFAMixBackend, PredictContext, UnknownEventError
from backend.settings import Settings
from tests.backend.http.test_app import LIVE, RecordingDispatcher, install_live_model, payload

LABEL_STUDIO = {"label_studio_url": "http://ls:8080", "label_studio_api_key": "k" * 40}


def make_backend(tmp_path: Path, **overrides: object) -> tuple[ALFAMixBackend, RecordingDispatcher]:
    dispatcher = RecordingDispatcher()
    return ALFAMixBackend(Settings(model_dir=tmp_path, **overrides), dispatcher), dispatcher  # type: ignore[arg-type]


def test_setup_reports_the_live_version_and_refuses_a_config_it_cannot_serve(tmp_path: Path) -> None:
    backend, _ = make_backend(tmp_path)
    config = payload("setup")["schema"]
    assert backend.setup(1, config) == "alfamix-untrained"
    install_live_model(tmp_path)
    assert backend.setup(1, config) == LIVE
    with pytest.raises(LabelConfigError):
        backend.setup(1, "<View><Text name='t' value='$text'/></View>")


def test_fit_requests_the_job_each_event_calls_for(tmp_path: Path) -> None:
    backend, dispatcher = make_backend(tmp_path)
    assert backend.fit("ANNOTATION_CREATED", payload("webhook_annotation_created")) == "queued"
    assert backend.fit("ANNOTATION_UPDATED", payload("webhook_annotation_updated")) == "already queued"
    assert backend.fit("TASKS_CREATED", payload("webhook_tasks_created")) == "queued"
    assert backend.fit("PROJECT_UPDATED", payload("webhook_project_updated")) == "ignored"
    assert backend.fit("ANNOTATION_CREATED", payload("webhook_annotation_created_skipped")) == "ignored"
    with pytest.raises(UnknownEventError, match="unknown webhook action 'MODEL_EXPLODED'"):
        backend.fit("MODEL_EXPLODED", {"project": {"id": 1}})
    assert dispatcher.requests == [("round", 1), ("round", 1), ("embed", 1)]


def test_predict_answers_from_the_live_head_and_asks_an_embed_job_for_tasks_it_lacks(tmp_path: Path) -> None:
    request = install_live_model(tmp_path)
    backend, dispatcher = make_backend(tmp_path, **LABEL_STUDIO)
    context = PredictContext(1, parse_label_config(request["label_config"]))
    tasks = [*request["tasks"], {"id": 99, "data": {"image": "/data/upload/1/new.png"}}]

    results = backend.predict(tasks, context)

    assert [r["result"][0]["value"]["choices"] if r["result"] else [] for r in results] == [["7"], ["2"], []]
    assert [(r["score"], r["model_version"]) for r in results] == [(1.0, LIVE), (0.0, LIVE), (1.0, LIVE)]
    assert dispatcher.requests == [("embed", 1)]
