"""/metrics in the Prometheus format: typed families with help text, read from history summaries."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from backend.state.files import FileProjectStore
from backend.state.records import RoundRecord
from tests.backend.http.test_app import make_client, payload


def test_every_family_has_help_text_and_a_type(tmp_path: Path) -> None:
    FileProjectStore(tmp_path, 2).append_round(RoundRecord("done", 0.0, model_version="v1", read_seconds=0.3))
    client, _ = make_client(tmp_path)
    client.post("/webhook", json=payload("webhook_annotation_created"))
    client.post("/predict", json=payload("predict"))
    answer = client.get("/metrics")
    assert answer.headers["content-type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    assert {name: family.type for name, family in families.items()} == {
        "alfamix_webhook_events": "counter",
        "alfamix_webhook_seconds": "histogram",
        "alfamix_predicted_tasks": "counter",
        "alfamix_rounds": "counter",
        "alfamix_round_stage_seconds": "histogram",
        "alfamix_predictions_pushed": "counter",
        "alfamix_tasks_embedded": "counter",
        "alfamix_live_model_info": "gauge",
        "alfamix_jobs": "gauge",
        "alfamix_state_reachable": "gauge",
    }
    assert all(family.documentation for family in families.values())
    lines = answer.text.splitlines()
    assert all(f"# HELP {name}" in "\n".join(lines) and f"# TYPE {name}" in answer.text for name in families)
    assert "alfamix_predicted_tasks_total 2.0" in lines


def test_scrapes_and_status_refreshes_read_the_summary_not_the_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileProjectStore(tmp_path, 3)
    for n in range(60):
        store.append_round(RoundRecord("done", float(n), model_version=f"v{n}", n_labeled_tasks=n, n_predictions=1))

    def refuse(self: FileProjectStore) -> list[RoundRecord]:
        raise AssertionError("the whole history was read")

    monkeypatch.setattr(FileProjectStore, "rounds", refuse)
    client, _ = make_client(tmp_path)
    assert 'alfamix_predictions_pushed_total{project="3"} 60.0' in client.get("/metrics").text.splitlines()
    status = client.get("/projects/3/status").json()
    assert status["n_rounds"] == 60 and len(status["rounds"]) == 50 and status["rounds"][-1]["model_version"] == "v59"
    assert client.get("/projects/3").status_code == 200
