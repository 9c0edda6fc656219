"""Contract tests: the payloads a real Label Studio 1.23.2 sent (tests/fixtures/label_studio_payloads),
replayed against the app, with a recording dispatcher in place of the job queue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from backend.http.app import create_app
from backend.jobs.coordination import LocalCoordinator
from backend.jobs.registry import JobKind
from backend.labelstudio.label_config import parse_label_config
from backend.ml_backend import ALFAMixBackend
from backend.pipeline.embedder import encoder_key
from backend.pipeline.heads import save_head
from backend.settings import Settings
from backend.state.files import FileProjectStore
from backend.state.records import RoundRecord

PAYLOADS = Path(__file__).resolve().parents[2] / "fixtures" / "label_studio_payloads"
AUTH = ("alfamix", "pw-123")


def payload(name: str) -> dict[str, Any]:
    return dict(json.loads((PAYLOADS / f"{name}.json").read_text()))


class RecordingDispatcher:
    def __init__(self) -> None:
        self.requests: list[tuple[str, int]] = []
        self.coordinator = LocalCoordinator()

    def request(self, kind: JobKind, project_id: int) -> bool:
        fresh = (kind, project_id) not in self.requests
        self.requests.append((kind, project_id))
        return fresh

    def status(self, project_id: int) -> dict[str, bool]:
        return {"round_pending": False, "running": False}

    def close(self) -> None:
        pass


def make_client(tmp_path: Path, **overrides: Any) -> tuple[TestClient, RecordingDispatcher]:
    settings = Settings(model_dir=tmp_path, **overrides)
    dispatcher = RecordingDispatcher()
    app = create_app(ALFAMixBackend(settings, dispatcher))
    return TestClient(app), dispatcher


@pytest.mark.parametrize(
    ("name", "status", "kind"),
    [
        ("webhook_annotation_created", "queued", "round"),
        ("webhook_annotation_updated", "queued", "round"),
        ("webhook_annotations_deleted", "queued", "round"),
        ("webhook_start_training", "queued", "round"),
        ("webhook_tasks_created", "queued", "embed"),
        ("webhook_annotation_created_skipped", "ignored", None),
        ("webhook_project_updated", "ignored", None),
    ],
)
def test_recorded_webhooks_queue_the_right_job(tmp_path: Path, name: str, status: str, kind: str | None) -> None:
    client, dispatcher = make_client(tmp_path)
    answer = client.post("/webhook", json=payload(name))
    assert answer.status_code == 200
    assert answer.json()["status"] == status
    assert dispatcher.requests == ([(kind, 1)] if kind else [])


def test_a_burst_of_webhooks_is_reported_as_already_queued(tmp_path: Path) -> None:
    client, _ = make_client(tmp_path)
    statuses = [client.post("/webhook", json=payload("webhook_annotation_created")).json()["status"] for _ in range(3)]
    assert statuses == ["queued", "already queued", "already queued"]


def test_recorded_setup_returns_the_untrained_version_and_starts_nothing_without_label_studio(tmp_path: Path) -> None:
    client, dispatcher = make_client(tmp_path)
    answer = client.post("/setup", json=payload("setup"))
    assert answer.status_code == 200
    assert answer.json() == {"model_version": "alfamix-untrained"}
    assert dispatcher.requests == []


def test_setup_embeds_existing_tasks_once_a_minute_when_label_studio_is_configured(tmp_path: Path) -> None:
    client, dispatcher = make_client(tmp_path, label_studio_url="http://ls:8080", label_studio_api_key="k" * 40)
    for _ in range(3):
        assert client.post("/setup", json=payload("setup")).status_code == 200
    assert dispatcher.requests == [("embed", 1)]


def test_recorded_predict_without_a_model_gives_one_empty_result_per_task(tmp_path: Path) -> None:
    client, _ = make_client(tmp_path)
    answer = client.post("/predict", json=payload("predict"))
    assert answer.status_code == 200
    assert answer.json() == {"results": [{"result": [], "score": 1.0, "model_version": "alfamix-untrained"}] * 2}


LIVE = "alfamix-1-20260101000000"


def install_live_model(model_dir: Path) -> dict[str, Any]:
    """A live version for project 1 whose head says "7" for task 3 and "2" for task 4; returns the request."""
    settings = Settings(model_dir=model_dir)
    request = payload("predict")  # tasks 3 and 4 of project 1, digits 0-9
    store = FileProjectStore(model_dir, 1)
    # A 2-d embedding space where class k's logit is z[k]: task 3 -> "7", task 4 -> "2".
    head = torch.nn.Linear(2, 10)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)
        head.weight[7, 0] = head.weight[2, 1] = 1.0
    store.embeddings(encoder_key(settings)).add(
        np.array([3, 4]),
        np.array([[50.0, 0.0], [0.0, 50.0]], dtype=np.float32),
        [t["data"]["image"] for t in request["tasks"]],
    )
    save_head(store, LIVE, head)
    store.save_queue(LIVE, np.array([4, 3]), np.array([2, 7]), np.array([0.0, 1.0]))
    spec = parse_label_config(request["label_config"])
    store.save_meta(
        LIVE,
        {
            "labels": list(spec.labels),
            "label_fingerprint": spec.fingerprint,
            "embedding_dim": 2,
            "head": {"kind": "linear", "hidden_dim": 256},
        },
    )
    store.set_live(LIVE)
    return request


def test_recorded_predict_answers_from_the_live_head_and_cached_embeddings(tmp_path: Path) -> None:
    request = install_live_model(tmp_path)
    client, _ = make_client(tmp_path)

    answer = client.post("/predict", json=request).json()

    def choice(label: str) -> list[dict[str, Any]]:
        return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]

    assert answer == {
        "results": [
            {"result": choice("7"), "score": 1.0, "model_version": LIVE},
            {"result": choice("2"), "score": 0.0, "model_version": LIVE},
        ]
    }
    assert client.post("/setup", json=payload("setup")).json() == {"model_version": LIVE}
    assert client.get("/versions").json() == {"versions": [LIVE]}


@pytest.mark.parametrize("path", ["/setup", "/predict", "/webhook", "/versions", "/metrics", "/projects/1/status"])
def test_every_endpoint_but_health_requires_the_configured_basic_auth(tmp_path: Path, path: str) -> None:
    client, _ = make_client(tmp_path, basic_auth_user=AUTH[0], basic_auth_pass=AUTH[1])
    method = "GET" if path in ("/versions", "/metrics", "/projects/1/status") else "POST"
    refused = client.request(method, path, json={})
    assert refused.status_code == 401
    assert refused.json() == {"error": "authentication required: this ML backend uses basic auth"}
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="alfamix"'
    wrong = client.request(method, path, json={}, auth=(AUTH[0], "nope"))
    assert wrong.status_code == 401
    allowed = client.request(method, path, json={}, auth=AUTH)
    assert allowed.status_code != 401
    assert client.get("/health").status_code == 200


def test_health_says_how_jobs_run_and_reveals_no_secret(tmp_path: Path) -> None:
    client, _ = make_client(
        tmp_path,
        label_studio_url="http://ls:8080",
        label_studio_api_key="secret-key-123",
        basic_auth_user=AUTH[0],
        basic_auth_pass=AUTH[1],
    )
    answer = client.get("/health")
    assert answer.json() == {
        "status": "UP",
        "model_class": "ALFAMixBackend",
        "jobs": "embedded",
        "label_studio": "configured",
        "workers": None,
    }
    metrics = client.get("/metrics", auth=AUTH).text
    assert "secret-key-123" not in answer.text + metrics and AUTH[1] not in answer.text + metrics


def test_metrics_count_webhook_events_by_action_and_status(tmp_path: Path) -> None:
    client, _ = make_client(tmp_path)
    client.post("/webhook", json=payload("webhook_annotation_created"))
    client.post("/webhook", json=payload("webhook_annotation_created"))
    client.post("/webhook", json=payload("webhook_project_updated"))
    text = client.get("/metrics").text
    assert 'alfamix_webhook_events_total{action="ANNOTATION_CREATED",status="queued"} 1.0' in text
    assert 'alfamix_webhook_events_total{action="ANNOTATION_CREATED",status="already queued"} 1.0' in text
    assert 'alfamix_webhook_events_total{action="PROJECT_UPDATED",status="ignored"} 1.0' in text
    assert "alfamix_webhook_seconds_count 3.0" in text


def test_predict_rejects_tasks_without_an_integer_id(tmp_path: Path) -> None:
    client, _ = make_client(tmp_path)
    request = payload("predict") | {"tasks": [{"data": {}}]}
    answer = client.post("/predict", json=request)
    assert answer.status_code == 400
    assert answer.json() == {"error": "every task needs an integer id"}


def test_webhook_without_an_action_is_a_400_naming_the_field(tmp_path: Path) -> None:
    client, _ = make_client(tmp_path)
    answer = client.post("/webhook", json={"project": {"id": 1}})
    assert answer.status_code == 400
    assert answer.json() == {"error": "invalid webhook: action: Field required"}


def test_predict_for_a_task_without_an_embedding_and_no_label_studio_is_an_empty_result(tmp_path: Path) -> None:
    install_live_model(tmp_path)
    client, _ = make_client(tmp_path)
    request = payload("predict") | {"tasks": [{"id": 99, "data": {"image": "/data/upload/1/x.png"}}]}
    answer = client.post("/predict", json=request)
    assert answer.status_code == 200
    assert answer.json() == {"results": [{"result": [], "score": 1.0, "model_version": LIVE}]}


@pytest.mark.parametrize("project", ["\u00b3", "0", "-1", "1e3", "99999999999999999999", " ", "abc.1"])
def test_project_ids_that_are_not_positive_ascii_integers_are_a_400(tmp_path: Path, project: str) -> None:
    client, _ = make_client(tmp_path)
    answer = client.post("/versions", json={"project": project})
    assert answer.status_code == 400
    assert "is not a Label Studio project id" in answer.json()["error"]


def test_status_page_and_learning_curve_render_from_the_history(tmp_path: Path) -> None:
    install_live_model(tmp_path)
    store = FileProjectStore(tmp_path, 1)
    store.append_round(
        RoundRecord("done", 0.0, model_version="v0", n_labeled_tasks=10, n_tasks=30, n_unlabeled_tasks=20)
    )
    store.append_round(
        RoundRecord(
            "done",
            0.0,
            model_version=LIVE,
            n_labeled_tasks=20,
            n_tasks=30,
            n_unlabeled_tasks=10,
            n_prelabeled=10,
            prelabel_accuracy=0.7,
            head_agreement=0.9,
            skipped_tasks={"7": "broken"},
            strategy="alfamix",
            training="projection",
            batch_kind="alfamix",
            batch_event="kept",
            n_audited=8,
            audit_hits=6,
        )
    )
    client, _ = make_client(tmp_path)

    status = client.get("/projects/1/status").json()
    assert status["counts"] == {"tasks": 30, "labeled": 20, "ranked": 10, "skipped": 1}
    assert (status["strategy"], status["training"]) == ("alfamix", "projection")
    assert status["pool_accuracy"] == pytest.approx(
        {"n_judged": 8, "accuracy": 0.75, "low": 0.4093, "high": 0.9285}, abs=1e-4
    )
    assert [(p["n_labels"], p["model_version"], p["accuracy"]) for p in status["learning_curve"]] == [(10, "v0", 0.7)]
    assert status["stop_signal"].startswith("Pre-label accuracy is 70% after 10 labels")
    page = client.get("/projects/1")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f'<dd id="live">{LIVE}' in page.text and "70%" in page.text and "90%" in page.text
    assert '<img id="learning-curve" src="/projects/1/learning-curve.png"' in page.text
    assert (
        '<dd id="pool-accuracy">75% (95% interval 41% to 93%), from the pre-labels of the latest 8 audit' in page.text
    )
    assert '<dd id="training">projection</dd>' in page.text
    assert "<td>alfamix</td><td>projection</td><td>alfamix, kept</td>" in page.text
    png = client.get("/projects/1/learning-curve.png")
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")


def test_metrics_derive_round_figures_from_the_history(tmp_path: Path) -> None:
    store = FileProjectStore(tmp_path, 4)
    for seconds in (0.3, 2.0):
        store.append_round(
            RoundRecord(
                "done", 0.0, model_version="v", n_predictions=50, n_embedded=10, read_seconds=seconds, push_seconds=0.05
            )
        )
    store.append_round(RoundRecord("failed", 0.0, error="Label Studio down"))
    store.set_live("alfamix-2-20260101000000")
    client, _ = make_client(tmp_path)
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 4}})
    lines = set(client.get("/metrics").text.splitlines())
    assert {
        'alfamix_rounds_total{project="4",status="done"} 2.0',
        'alfamix_rounds_total{project="4",status="failed"} 1.0',
        'alfamix_round_stage_seconds_bucket{le="0.5",project="4",stage="read"} 1.0',
        'alfamix_round_stage_seconds_bucket{le="2.5",project="4",stage="read"} 2.0',
        'alfamix_round_stage_seconds_sum{project="4",stage="read"} 2.3',
        'alfamix_round_stage_seconds_count{project="4",stage="push"} 2.0',
        'alfamix_predictions_pushed_total{project="4"} 100.0',
        'alfamix_tasks_embedded_total{project="4"} 20.0',
        'alfamix_live_model_info{model_version="alfamix-2-20260101000000",project="4"} 1.0',
        'alfamix_webhook_seconds_bucket{le="+Inf"} 1.0',
        'alfamix_jobs{project="4",state="round_pending"} 0.0',
        "alfamix_state_reachable 1.0",
    } <= lines
